"""Retiming keeps order and burst shape; truncation, speed-up and mixing by share."""

from __future__ import annotations

import numpy as np
import pytest

from load_generator import load_workload, resolve
from load_generator.stats import workload_stats
from load_generator.transforms import mean_rate, merge, retime, speedup, truncate
from phaser.errors import PhaserError


def test_retime_keeps_order_and_burst_shape():
    bursty = load_workload("paper-mix?cv=3", n=20_000, rate=20.0, seed=7)
    before = workload_stats(bursty)
    out = retime(bursty, 80.0)
    after = workload_stats(out)
    assert after["rate"] == pytest.approx(80.0, rel=1e-9)
    assert after["cv"] == pytest.approx(before["cv"], rel=1e-9)
    assert before["cv"] == pytest.approx(3.0, rel=0.05)
    assert [r.id for r in out] == [r.id for r in bursty]  # same order
    g0, g1 = np.diff([r.arrival_s for r in bursty]), np.diff([r.arrival_s for r in out])
    assert np.allclose(g1, g0 * mean_rate(bursty) / 80.0, rtol=1e-6, atol=1e-9)  # every gap scaled by one factor
    assert out[0].arrival_s == bursty[0].arrival_s


def test_retime_of_a_real_trace_keeps_its_cv():
    conv = load_workload("azure-conv")
    fast = load_workload("azure-conv", rate=50.0)
    assert mean_rate(fast) == pytest.approx(50.0, rel=1e-9)
    assert workload_stats(fast)["cv"] == pytest.approx(workload_stats(conv)["cv"], rel=1e-9)


def test_speedup_and_truncate():
    reqs = load_workload("paper-mix", n=100, seed=1)
    fast = speedup(reqs, 4.0)
    assert fast[-1].arrival_s - fast[0].arrival_s == pytest.approx((reqs[-1].arrival_s - reqs[0].arrival_s) / 4)
    assert len(truncate(reqs, n=10)) == 10
    cut = truncate(reqs, duration_s=2.0)
    assert cut and all(r.arrival_s - reqs[0].arrival_s <= 2.0 for r in cut)
    assert len(cut) < len(reqs) and cut == reqs[:len(cut)]


def test_trace_options_count_then_rate_then_duration():
    reqs = load_workload("azure-code", n=500, rate=100.0)
    assert len(reqs) == 500 and mean_rate(reqs) == pytest.approx(100.0, rel=1e-9)
    short = load_workload("azure-code", rate=100.0, duration_s=10.0)
    assert short[-1].arrival_s <= 10.0 and len(short) > 500


def test_mix_by_share():
    t = resolve("paper-mix@3+sharegpt@1", rate=40.0, duration_s=500.0, seed=3)
    tasks = [r.task for r in t.requests]
    share_sharegpt = tasks.count("sharegpt") / len(tasks)
    assert share_sharegpt == pytest.approx(0.25, rel=0.05)
    assert workload_stats(t.requests)["rate"] == pytest.approx(40.0, rel=0.05)
    assert len({r.id for r in t.requests}) == len(t.requests)
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(t.requests, t.requests[1:]))


def test_merge_refuses_clashing_ids():
    a = load_workload("paper-mix", n=5, seed=1)
    with pytest.raises(PhaserError, match="clashing"):
        merge([a, a])
