"""Headroom: how much could *any* router gain over round robin on a scenario?

A benchmark that only ranks policies cannot say whether a target such as
"15 % better than round robin" is reachable. Two references answer it; neither
is a deployable policy (both read what no router can know):

* **Isolated bound** (``isolated_e2e``): every request served alone on a fresh
  instance of the scenario's profile, arriving at an idle GPU. In this engine an
  iteration never gets cheaper when the batch or the KV read grows, and every
  wait adds time, so no routing of the same requests onto the same instances
  can give a lower mean E2E: ``1 − isolated / round_robin`` is a strict upper
  bound on any router's improvement. It is loose: it pretends the load needs no
  batching at all.

* **Clairvoyant lookahead** (``lookahead``; ``clairvoyant=False`` / ``--predicted``
  for the blindfolded variant that knows only predicted lengths and no future
  arrivals): at every routing decision, try each
  instance on a copy of the simulator — which knows every request's true output
  length and every future arrival — continue with a base heuristic for
  ``horizon_s`` of virtual time, and take the instance whose window has the least
  total time-in-system (by Little's law, the latency all requests accrue in the
  window). It never waits. This is one step of policy improvement over the base
  heuristic with perfect information: an *achievable* figure (the run is a
  real simulation) that no router seeing only the present can be expected to
  reach, so it estimates the ceiling from below where the isolated bound caps
  it from above.

The engine and simulator are the ones ``phaser bench`` runs; the lookahead
itself lives in ``phaser.sim.lookahead`` (the learned router's imitation
teacher uses it too).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from phaser.bench.scenarios import Scenario
from phaser.engine.instance import Instance
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from phaser.sim.lookahead import lookahead_run


def isolated_e2e(sc: Scenario, requests: list) -> np.ndarray:
    """E2E of each request served alone on a fresh, idle instance of ``sc``'s profile.
    Requests the instance refuses (longer than its context or KV cache) are left out,
    as the simulator's latency statistics leave out the requests it rejects."""
    prof = get_profile(sc.profile)
    out = []
    for r in requests:
        inst = Instance(0, prof, chunked_prefill=sc.chunked_prefill, max_num_batched_tokens=sc.max_num_batched_tokens)
        if inst.refusal(r) is not None:
            continue
        inst.add(r, r.arrival_s)
        (rec,) = inst.advance(math.inf)
        out.append(rec.e2e_s)
    return np.array(out, dtype=float)


@dataclass
class LookaheadResult:
    e2e_mean: float
    records: list
    decisions: int
    forks: int
    wall_seconds: float


def lookahead(requests: list, config, make_base: Callable[[], object], *, predictor=None, seed: int = 0,
              horizon_s: float = 10.0, on_progress: Callable[[int], None] | None = None,
              clairvoyant: bool = True) -> LookaheadResult:
    """Run the one-step lookahead (``phaser.sim.lookahead``) over ``requests``."""
    from phaser.sim.simulator import ClusterSim

    t0 = time.perf_counter()
    sim = ClusterSim(requests, config, predictor=predictor, seed=seed)
    la = lookahead_run(sim, make_base(), horizon_s, on_progress, clairvoyant)
    recs = sorted(sim.records, key=lambda r: (r.arrival_s, r.id))
    e2e = float(np.mean([r.e2e_s for r in recs])) if recs else math.nan
    return LookaheadResult(e2e, recs, sim.decisions, la.forks, time.perf_counter() - t0)


def headroom_row(sc: Scenario, seed: int, *, base: str = "workload-aware", horizon_s: float = 10.0,
                 with_lookahead: bool = True, on_progress: Callable[[int], None] | None = None,
                 clairvoyant: bool = True) -> dict:
    """Round robin, ``base``, the lookahead over ``base`` and the isolated bound on one workload seed;
    improvements are of mean E2E over round robin on the same requests (paired)."""
    from phaser.bench import runner
    from phaser.policies import make_policy
    from phaser.predictor import CrossFitted

    reqs = runner.load_requests(sc, seed)
    if not reqs:
        raise PhaserError(f"workload {sc.workload!r} produced no requests")
    rr, _ = runner.run_one(sc, "round-robin", seed, requests=reqs)
    bh, _ = runner.run_one(sc, base, seed, requests=reqs)
    iso = float(isolated_e2e(sc, reqs).mean())

    def gain(e2e: float) -> float:
        return 100.0 * (1.0 - e2e / rr["e2e_mean"])

    row = {"scenario": sc.name, "seed": seed, "n_requests": len(reqs), "base": base, "horizon_s": horizon_s,
           "round_robin_e2e": rr["e2e_mean"], "base_e2e": bh["e2e_mean"], "base_gain_pct": gain(bh["e2e_mean"]),
           "isolated_e2e": iso, "isolated_gain_pct": gain(iso),
           "lookahead_e2e": None, "lookahead_gain_pct": None, "lookahead_wall_s": None,
           "lookahead_mode": "clairvoyant" if clairvoyant else "predicted",
           "config": sc.as_dict()}
    if with_lookahead:
        la = lookahead(reqs, runner.sim_config(sc), lambda: make_policy(base, sc.instances, seed),
                       predictor=CrossFitted(reqs), seed=seed, horizon_s=horizon_s,
                       on_progress=on_progress, clairvoyant=clairvoyant)
        row.update(lookahead_e2e=la.e2e_mean, lookahead_gain_pct=gain(la.e2e_mean),
                   lookahead_wall_s=la.wall_seconds)
    return row


def aggregate_headroom(rows: list[dict]) -> list[dict]:
    """Per scenario: mean ± 95 % CI over seeds of every column."""
    from phaser.bench.stats import mean_ci

    out = []
    for name in dict.fromkeys(r["scenario"] for r in rows):
        rs = [r for r in rows if r["scenario"] == name]
        a = {"scenario": name, "seeds": len(rs), "base": rs[0]["base"], "horizon_s": rs[0]["horizon_s"],
             "lookahead_mode": rs[0].get("lookahead_mode", "clairvoyant")}
        for k in ("round_robin_e2e", "base_e2e", "base_gain_pct", "isolated_e2e", "isolated_gain_pct",
                  "lookahead_e2e", "lookahead_gain_pct"):
            vals = [r[k] for r in rs if r[k] is not None]
            a[k], a[f"{k}_ci95"] = mean_ci(vals) if vals else (None, None)
        out.append(a)
    return out
