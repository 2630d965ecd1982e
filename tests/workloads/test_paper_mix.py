"""paper-mix matches every number of the paper's table within 5%."""

from __future__ import annotations

import numpy as np
import pytest

from load_generator import load_workload
from load_generator.stats import workload_stats
from load_generator.synthetic.paper_mix import HEAVY_DECODE_TOKENS, PROMPT_CAP, TASKS, fitted, sample_lengths

#: the paper's table (arXiv 2408.13510), typed in independently of paper_mix.TASKS
TABLE = {
    "books": (29.09, 61.76, 0.0918), "eli5": (29.83, 334.40, 0.5818), "imdb": (211.54, 142.53, 0.4101),
    "squad": (125.16, 220.02, 0.4795), "wnut": (26.41, 64.10, 0.0871),
}


def test_heavy_decode_threshold_is_five_seconds_at_34ms():
    assert HEAVY_DECODE_TOKENS == int(5.0 / 0.034)


def test_fitted_distributions_are_exact():
    for name, (p_mean, d_mean, heavy) in TABLE.items():
        p, d = fitted()[name]
        assert p.mean == pytest.approx(p_mean, rel=1e-6)
        assert d.mean == pytest.approx(d_mean, rel=1e-6)
        assert d.share_at_least(HEAVY_DECODE_TOKENS) == pytest.approx(heavy, rel=1e-6)
        assert p.values.max() == PROMPT_CAP


def test_samples_match_the_table_within_5_percent():
    # 100,000 requests = ~20,000 per task
    task, prompt, decode = sample_lengths(100_000, np.random.default_rng(11))
    assert prompt.max() <= PROMPT_CAP and prompt.min() >= 1 and decode.min() >= 1
    for i, t in enumerate(TASKS):
        p_mean, d_mean, heavy = TABLE[t.name]
        sel = task == i
        assert sel.mean() == pytest.approx(0.2, rel=0.05)  # uniform over five tasks
        assert prompt[sel].mean() == pytest.approx(p_mean, rel=0.05), t.name
        assert decode[sel].mean() == pytest.approx(d_mean, rel=0.05), t.name
        assert (decode[sel] >= HEAVY_DECODE_TOKENS).mean() == pytest.approx(heavy, rel=0.05), t.name


def test_named_workload_is_tagged_poisson_at_20_per_second_by_default():
    reqs = load_workload("paper-mix", n=20_000, seed=5)
    s = workload_stats(reqs)
    assert set(s["tasks"]) == set(TABLE)
    assert s["rate"] == pytest.approx(20.0, rel=0.05)
    assert s["cv"] == pytest.approx(1.0, rel=0.05)
    assert len(load_workload("paper-mix")) == 2000  # the paper's episode
    assert [r.id for r in reqs] == sorted(r.id for r in reqs) and len({r.id for r in reqs}) == len(reqs)


def test_seed_reproduces_and_changes_the_workload():
    a = load_workload("paper-mix", n=50, seed=1)
    b = load_workload("paper-mix", n=50, seed=1)
    c = load_workload("paper-mix", n=50, seed=2)
    key = lambda rs: [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.task) for r in rs]  # noqa: E731
    assert key(a) == key(b) and key(a) != key(c)
