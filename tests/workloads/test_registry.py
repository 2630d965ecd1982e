"""Named workloads and spec errors."""

from __future__ import annotations

import pytest
import numpy as np

from load_generator import NAMES, load_workload
from load_generator.stats import workload_stats
from phaser.errors import PhaserError


@pytest.mark.parametrize("name", NAMES)
def test_every_named_workload_loads_sorted_with_unique_ids(name):
    reqs = load_workload(name, n=300, seed=1)
    assert len(reqs) == 300
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(reqs, reqs[1:]))
    assert len({r.id for r in reqs}) == 300 and reqs[0].arrival_s >= 0
    assert all(r.prompt_tokens >= 1 and r.output_tokens >= 1 for r in reqs)


def test_length_workloads_reproduce_their_file_means():
    s = workload_stats(load_workload("arxiv-summarization", n=20_000, rate=10.0))
    assert s["prompt"]["mean"] == pytest.approx(2588.1, rel=0.05)  # file mean (measured on the vendored file)
    assert s["output"]["mean"] == pytest.approx(291.4, rel=0.05)
    assert s["rate"] == pytest.approx(10.0, rel=0.05)


def test_duration_only_runs_the_process_for_that_long():
    reqs = load_workload("sharegpt", rate=50.0, duration_s=100.0, seed=2)
    assert reqs[-1].arrival_s <= 100.0
    assert len(reqs) == pytest.approx(5000, rel=0.05)


@pytest.mark.parametrize("spec, msg", [
    ("nope", "unknown workload 'nope'"),
    ("/nonexistent.csv", "workload file '/nonexistent.csv' does not exist"),
    ("traces/missing.jsonl?speed=2", "workload file 'traces/missing.jsonl' does not exist"),
    ("my-trace.csv", "workload file 'my-trace.csv' does not exist"),
    ("", "empty"),
    ("paper-mix?cv=-1", "cv= must be a positive number"),
    ("paper-mix?burst=2", "unknown workload option"),
    ("azure-conv?cv=2", "replayed trace"),
    ("paper-mix?steps=abc", "steps= must look like"),
    ("paper-mix@x+sharegpt@1", "share of 'paper-mix'"),
    ("paper-mix+sharegpt", "needs a share"),
])
def test_bad_specs_are_one_line_user_errors(spec, msg):
    with pytest.raises(PhaserError, match=msg) as e:
        load_workload(spec)
    assert "\n" not in str(e.value)


def test_bad_numbers_are_user_errors():
    with pytest.raises(PhaserError):
        load_workload("paper-mix", rate=-1.0)
    with pytest.raises(PhaserError):
        load_workload("paper-mix", n=0)


def test_a_sequence_changes_the_traffic_mid_run():
    from load_generator import load_workload

    reqs = load_workload("paper-mix?rate=8>azure-code?rate=1.5", n=1001, seed=0)
    assert len(reqs) == 1001 and len({r.id for r in reqs}) == 1001 and reqs[0].id.startswith("seq-")
    first, second = reqs[:501], reqs[501:]
    assert all(a.arrival_s <= b.arrival_s for a, b in zip(reqs, reqs[1:]))
    # each part at its own rate, the second starting where the first ends
    assert 500 / (first[-1].arrival_s - first[0].arrival_s) == pytest.approx(8, rel=0.15)
    assert 499 / (second[-1].arrival_s - second[0].arrival_s) == pytest.approx(1.5, rel=0.25)
    assert 0 < second[0].arrival_s - first[-1].arrival_s < 1.0
    # the traffic really changes: azure-code's prompts are an order of magnitude longer
    assert np.median([r.prompt_tokens for r in second]) > 5 * np.median([r.prompt_tokens for r in first])


@pytest.mark.parametrize("spec, msg", [("paper-mix>", "every part needs a workload"),
                                       ("paper-mix?rate=-1", "rate= must be a positive number")])
def test_bad_sequences_and_rates_are_one_line_errors(spec, msg):
    from load_generator import load_workload

    with pytest.raises(PhaserError, match=msg):
        load_workload(spec, n=10)


def test_skip_starts_a_replay_later_and_only_a_replay():
    from load_generator import load_workload

    whole = load_workload("azure-conv", n=130)
    later = load_workload("azure-conv?skip=100", n=30)
    assert [r.prompt_tokens for r in later] == [r.prompt_tokens for r in whole[100:]]
    assert later[0].arrival_s == 0.0
    with pytest.raises(PhaserError, match="synthetic"):
        load_workload("paper-mix?skip=3", n=5)
    with pytest.raises(PhaserError, match="skip= must be a whole number"):
        load_workload("azure-conv?skip=-2", n=5)
