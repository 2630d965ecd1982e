"""Router replicas in the simulator (``SimConfig.replicas``): each replica decides
its own requests with its own view and sees the others' assignments late."""

from __future__ import annotations

import dataclasses

import pytest

from load_generator.registry import load_workload
from phaser.errors import PhaserError
from phaser.policies import make_policy
from phaser.sim import ClusterSim, SimConfig, simulate


def _reqs(n=300, rate=20.0):
    return list(load_workload("paper-mix", n=n, rate=rate, seed=3))


def _cfg(**kw):
    return SimConfig(instances=4, profile="a100-llama2-7b", **kw)


def test_every_request_is_served_once_and_no_view_leaks_with_a_long_delay():
    reqs = _reqs()
    cfg = _cfg(replicas=3, replica_delay_s=30.0)  # longer than most requests take: completions overtake assignments
    sim = ClusterSim(reqs, cfg, seed=0)
    sim.run([make_policy("least-requests", 4, r) for r in range(3)])
    assert len(sim.records) == len(reqs) and len({r.id for r in sim.records}) == len(reqs)
    for v in sim.views:  # every view ends empty: nothing outstanding forever
        assert all(i.outstanding == 0 for i in v.instances) and v.outstanding == 0
    assert all(not e for e in sim._early)  # every early completion met its assignment later


def test_requests_split_by_a_stable_hash():
    sim = ClusterSim(_reqs(), _cfg(replicas=4), seed=0)
    share = [0] * 4
    for r in _reqs():
        k = sim.replica_of(r.id)
        assert k == sim.replica_of(r.id)
        share[k] += 1
    assert min(share) > 0.15 * sum(share)


def test_a_delayed_view_misses_the_other_replicas_decisions():
    reqs = _reqs(n=50, rate=1000.0)  # a burst: every decision within a few ms
    sim = ClusterSim(reqs, _cfg(replicas=2, replica_delay_s=10.0), seed=0)
    seen_by_other = []
    policies = [make_policy("least-requests", 4, r) for r in range(2)]
    while (d := sim.next_decision()) is not None:
        r = sim.pending_replica
        other = sim.views[1 - r]
        seen_by_other.append(sum(i.outstanding for i in other.instances))
        sim.apply(policies[r].decide(*d))
    own = [sum(i.outstanding for i in v.instances) for v in sim.views]
    assert max(seen_by_other) < len(reqs) // 2 + 5 and sum(own) == 0


def test_one_policy_per_replica_is_required_and_one_router_is_unchanged():
    reqs = _reqs(n=120)
    with pytest.raises(PhaserError, match="one policy per replica"):
        simulate(reqs, make_policy("round-robin", 4, 0), _cfg(replicas=2))
    with pytest.raises(PhaserError, match="need 2 policies"):
        simulate(reqs, [make_policy("round-robin", 4, 0)], _cfg(replicas=2))
    a = simulate(reqs, make_policy("least-requests", 4, 0), _cfg())
    b = simulate(reqs, [make_policy("least-requests", 4, 0)], dataclasses.replace(_cfg(), replicas=1))
    assert a.summary["e2e_mean"] == b.summary["e2e_mean"]
    with pytest.raises(PhaserError):
        _cfg(replicas=0).validate()
