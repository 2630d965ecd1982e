"""Canary split and rollback rule, driven by hand."""

from __future__ import annotations

import random

import pytest

from phaser.errors import PhaserError
from phaser.versions.guard import CanaryGuard, GuardConfig, canary_bucket


def test_canary_share_is_respected_and_deterministic():
    g = CanaryGuard(1, 2, 0.0, GuardConfig(share=0.2))
    ids = [f"req-{i}" for i in range(20_000)]
    share = sum(g.routes_to_canary(r) for r in ids) / len(ids)
    assert 0.19 < share < 0.21
    assert [canary_bucket(r) for r in ids[:50]] == [canary_bucket(r) for r in ids[:50]]


def _run(guard, e2e_inc, e2e_can, n, rng, t0=0.0):
    t = t0
    for i in range(n):
        rid = f"r{t0}-{i}"
        v = guard.canary if guard.routes_to_canary(rid) else guard.incumbent
        guard.on_assign(rid, v, t)
        base = e2e_can if v == guard.canary else e2e_inc
        guard.on_complete(rid, base * rng.uniform(0.5, 1.5))
        t += 0.05
    return t


def test_worse_canary_is_rolled_back_with_reason():
    g = CanaryGuard(1, 2, 0.0, GuardConfig(share=0.5, threshold=0.1, min_samples=50, promote_after=100))
    t = _run(g, 1.0, 1.5, 400, random.Random(0))
    v = g.evaluate(t)
    assert v is not None and v.kind == "rolled_back"
    assert "worse" in v.reason and v.stats["canary_mean_e2e_s"] > v.stats["incumbent_mean_e2e_s"]


def test_equal_canary_is_promoted_after_enough_completions():
    cfg = GuardConfig(share=0.5, threshold=0.1, min_samples=50, promote_after=150)
    g = CanaryGuard(1, 2, 0.0, cfg)
    t = _run(g, 1.0, 1.0, 200, random.Random(1))
    assert g.evaluate(t) is None  # ~100 canary completions < promote_after
    t = _run(g, 1.0, 1.0, 200, random.Random(2), t0=t)
    v = g.evaluate(t)
    assert v is not None and v.kind == "promoted"


def test_slow_inflight_requests_count_so_a_stalling_canary_is_caught_early():
    g = CanaryGuard(1, 2, 0.0, GuardConfig(share=0.5, min_samples=20, promote_after=40))
    for i in range(100):
        rid = f"r{i}"
        v = g.canary if g.routes_to_canary(rid) else g.incumbent
        g.on_assign(rid, v, 0.0)
        if v == g.incumbent:
            g.on_complete(rid, 1.0)
    # the canary's requests never finished; at t=10 they are at least 10 s old
    v = g.evaluate(10.0)
    assert v is not None and v.kind == "rolled_back"


def test_unjudgeable_canary_times_out():
    g = CanaryGuard(1, 2, 0.0, GuardConfig(min_samples=10, promote_after=10, max_age_s=60.0))
    assert g.evaluate(30.0) is None
    v = g.evaluate(61.0)
    assert v is not None and v.kind == "rolled_back" and "cannot be judged" in v.reason


def test_requests_before_the_canary_and_duplicates_are_ignored():
    g = CanaryGuard(1, 2, 10.0, GuardConfig(min_samples=1, promote_after=1))
    g.on_assign("old", 1, 5.0)
    g.on_complete("old", 100.0)
    g.on_assign("a", 2, 11.0)
    g.on_complete("a", 1.0)
    g.on_complete("a", 50.0)
    g.on_assign("b", 1, 11.0)
    g.on_complete("b", 1.0)
    v = g.evaluate(12.0)
    assert v.kind == "promoted" and v.stats["canary_mean_e2e_s"] == 1.0 and v.stats["incumbent_n"] == 1


@pytest.mark.parametrize("kw", [{"share": 0.0}, {"share": 1.5}, {"threshold": -0.1}, {"min_samples": 10, "promote_after": 5}])
def test_bad_config_is_a_user_error(kw):
    with pytest.raises(PhaserError):
        GuardConfig(**kw)


def test_spill_over_rolls_back_when_the_incumbent_gets_worse_too():
    g = CanaryGuard(1, 2, 0.0, GuardConfig(share=0.5, min_samples=50, promote_after=1000), baseline_e2e_s=1.0)
    t = _run(g, 2.0, 2.0, 400, random.Random(3))  # both cohorts twice as slow as before the canary
    v = g.evaluate(t)
    assert v is not None and v.kind == "rolled_back" and "spill-over" in v.reason


def test_probation_rolls_back_a_version_that_degrades_at_full_traffic():
    from phaser.versions.guard import ProbationGuard

    cfg = GuardConfig(min_samples=30, promote_after=60, probation_s=50.0)
    bad = ProbationGuard(version=2, previous=1, baseline_e2e_s=1.0, started_s=0.0, config=cfg)
    good = ProbationGuard(version=2, previous=1, baseline_e2e_s=1.0, started_s=0.0, config=cfg)
    for i in range(100):
        for g, e2e in ((bad, 1.5), (good, 1.02)):
            g.on_assign(f"r{i}", 2, float(i))
            g.on_complete(f"r{i}", e2e)
    vb, vg = bad.evaluate(100.0), good.evaluate(100.0)
    assert vb.kind == "rolled_back" and vb.stats["to_version"] == 1.0
    assert vg.kind == "confirmed"
