"""paper-mix matches every number of the paper's table within 5%."""

from __future__ import annotations

import numpy as np
import pytest

from load_generator import load_workload
from load_generator.stats import workload_stats
from load_generator.synthetic.paper_mix import HEAVY_DECODE_TOKENS, PROMPT_CAP, TASKS, WEIGHTS, fitted, sample_lengths

#: the paper's table (arXiv 2408.13510), typed in independently of paper_mix.TASKS
TABLE = {
    "books": (29.09, 61.76, 0.0918), "eli5": (29.83, 334.40, 0.5818), "imdb": (211.54, 142.53, 0.4101),
    "squad": (125.16, 220.02, 0.4795), "wnut": (26.41, 64.10, 0.0871),
}
#: the paper's sample counts per task (31,329 in all) and its "Total" row
SAMPLES = {"books": 7351, "eli5": 6988, "imdb": 6564, "squad": 7122, "wnut": 3304}
TOTAL = (89.03, 175.71, 0.3554)


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
    # 100,000 requests = 10,000-24,000 per task
    task, prompt, decode = sample_lengths(100_000, np.random.default_rng(11))
    assert prompt.max() <= PROMPT_CAP and prompt.min() >= 1 and decode.min() >= 1
    for i, t in enumerate(TASKS):
        p_mean, d_mean, heavy = TABLE[t.name]
        sel = task == i
        assert sel.mean() == pytest.approx(SAMPLES[t.name] / 31329, rel=0.05)  # the dataset's proportions
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


def test_named_workload_matches_the_papers_total_row_within_2_percent():
    """The paper samples its 31,329-row dataset uniformly: the mix is its Total row."""
    s = workload_stats(load_workload("paper-mix", n=100_000, seed=0))
    assert s["prompt"]["mean"] == pytest.approx(TOTAL[0], rel=0.02)
    assert s["output"]["mean"] == pytest.approx(TOTAL[1], rel=0.02)
    assert s["heavy_decode_share"] == pytest.approx(TOTAL[2], rel=0.02)
    assert s["tasks"]["wnut"]["share"] == pytest.approx(3304 / 31329, rel=0.05)


def test_uniform_variant_keeps_equal_shares_and_misses_the_total_row():
    reqs = load_workload("paper-mix-uniform", n=50_000, seed=0)
    tasks = [r.task for r in reqs]
    for name in TABLE:
        assert tasks.count(name) / len(tasks) == pytest.approx(0.2, rel=0.05)
    # equal shares under-weight IMDb/SQuAD relative to WNUT: the mean decode is ~6 % low
    assert np.mean([r.output_tokens for r in reqs]) < 0.96 * TOTAL[1]
    assert reqs[0].id.startswith("paper-mix-uniform-")


def test_weights_are_the_sample_counts():
    assert WEIGHTS["paper-mix"] == pytest.approx([SAMPLES[t.name] / 31329 for t in TASKS])
    assert sum(WEIGHTS["paper-mix"]) == pytest.approx(1.0)
