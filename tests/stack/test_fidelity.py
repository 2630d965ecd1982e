"""Live stack vs simulator: the same workload and seed through the embedded
broker, the router (round robin) and a time-scaled worker on one side, and
through ``phaser.sim.simulate`` on the other, must agree per request.

Stated tolerance (stack seconds), and why:

* the instance of every request is identical (round robin over the same
  arrival order — any reordering or loss in the pipeline breaks this);
* ``|E2E_live − router_wait_live − E2E_sim|``: median ≤ 0.1 s and 90th
  percentile ≤ 0.5 s. The simulator routes at arrival; the live router
  decides after the requests-topic hop, which it reports as ``router_wait``
  (a few wall ms × the time scale), so that part is subtracted. What remains is
  the effect of the live request joining a later engine iteration than in the
  simulator and of the ripples that has on its batch-mates: observed ≤ 0.12 s
  (p99 ≈ 0.06 s) at time scale 5 on a quiet 2-core box. The bounds are
  loose on purpose: every wall millisecond a loaded machine delays a process
  is 5 stack ms here, so a test that bounded the *worst* request (it did:
  ≤ 0.25 s) failed on busy machines (a 0.78 s outlier with a benchmark on the
  other core) while saying nothing about phaser. The tight figures are a
  benchmark (README, "live stack agrees with the simulator"), not a test;
* the median raw ``|E2E_live − E2E_sim|`` ≤ 0.15 s: the hop itself stays small.
"""

from __future__ import annotations

import numpy as np

from load_generator.registry import load_workload
from phaser.policies import make_policy
from phaser.sim.simulator import SimConfig, simulate

TIME_SCALE = 5.0
PROFILE = "v100-llama2-7b"
INSTANCES = 4


async def test_live_stack_matches_the_simulator_per_request(bare_broker, stack_runner):
    reqs = load_workload("paper-mix", n=120, seed=11, rate=20.0)
    sim = simulate(reqs, make_policy("round-robin", INSTANCES), SimConfig(instances=INSTANCES, profile=PROFILE))
    expect = {r.id: r for r in sim.records}
    run = await stack_runner(bare_broker.bootstrap, reqs, instances=INSTANCES, profile=PROFILE, time_scale=TIME_SCALE)
    live = run.completions
    assert live.keys() == expect.keys()
    assert all(live[k].instance == expect[k].instance for k in expect)
    adjusted = np.array([live[k].e2e_s - live[k].router_wait_s - expect[k].e2e_s for k in expect])
    raw = np.array([live[k].e2e_s - expect[k].e2e_s for k in expect])
    worst = max(expect, key=lambda k: abs(live[k].e2e_s - live[k].router_wait_s - expect[k].e2e_s))
    assert np.median(np.abs(adjusted)) <= 0.1, (worst, live[worst], expect[worst])
    assert np.percentile(np.abs(adjusted), 90) <= 0.5, (worst, live[worst], expect[worst])
    assert np.median(np.abs(raw)) <= 0.15
