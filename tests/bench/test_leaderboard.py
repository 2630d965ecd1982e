"""The leaderboard: families, the benchmark's own requests, goodput, capture ratio, output."""

from __future__ import annotations

import json

import pytest

from phaser.bench import leaderboard as lb
from phaser.cli.main import main
from phaser.errors import PhaserError


def test_unknown_family_is_one_line_listing_the_valid_names(capsys):
    with pytest.raises(PhaserError, match="unknown family 'nope'; known: paper, paper-16gb, kv-starved"):
        lb.get_families("paper,nope")
    assert main(["bench", "leaderboard", "--families", "nope"]) == 2
    assert "known: paper" in capsys.readouterr().err


def test_requests_are_the_benchmarks_own_never_training_draws():
    from phaser.rl.training import DEMO_SEED_BASE, TRAIN_SEED_BASE
    from phaser.rl.windows import TEST_SEED_BASE, TraceWindows

    assert lb.SEED_BASE > DEMO_SEED_BASE > TRAIN_SEED_BASE  # synthetic draws: a seed range nobody trains on
    fam = lb.FAMILIES["bursty-long-prompt"]
    reqs = lb.family_requests(fam, 0, None, 0)
    assert [r.id for r in reqs] == [r.id for r in TraceWindows("azure-code").requests(TEST_SEED_BASE)]  # a test window
    fast = lb.family_requests(fam, 0, 10.0, 0)
    assert len(fast) == len(reqs) and fast[-1].arrival_s < reqs[-1].arrival_s  # retimed, same requests


def test_goodput_counts_rejected_requests_as_missing_the_slo():
    class R:
        def __init__(self, ttft, tbt):
            self.ttft_s, self.tbt_p99_s = ttft, tbt

    recs = [R(0.5, 0.05), R(3.0, 0.05), R(0.5, 0.3), R(1.0, 0.1)]
    assert lb.goodput(recs, rejected=1, slo_ttft=2.0, slo_tbt=0.2) == pytest.approx(2 / 5)


def test_a_small_board_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASER_CACHE", str(tmp_path / "cache"))
    fam = lb.Family("tiny", lb.Scenario("tiny", "paper-mix", 2, "a100-llama3-8b", 20.0, 80), note="test")
    board = lb.run_board([fam], ["round-robin", "least-requests"], loads=(0.8,), seeds=2, n=80, with_lookahead=True)
    (f,) = board["families"]
    assert f["capacity_rps"] > 0 and f["seeds"] == 2
    (p,) = f["points"]
    assert p["rate"] == pytest.approx(0.8 * f["capacity_rps"]) and p["lookahead_gain_pct"] is not None
    rows = {r["policy"]: r for r in p["rows"]}
    assert rows["round-robin"]["gain_vs_rr_pct"] == 0 and 0 <= rows["least-requests"]["goodput"] <= 1
    for r in rows.values():
        want = None if p["lookahead_gain_pct"] < lb.MIN_LOOKAHEAD_GAIN else r["gain_vs_rr_pct"] / p["lookahead_gain_pct"]
        assert r["capture_ratio"] == (pytest.approx(want) if want is not None else None)
    cached = list((tmp_path / "cache" / "leaderboard").glob("lookahead-*.json"))
    assert len(cached) == 1  # the lookahead ran once and is cached outside the checkout
    again = lb.run_board([fam], ["round-robin"], loads=(0.8,), seeds=1, n=80, with_lookahead=True)
    assert again["families"][0]["points"][0]["lookahead_gain_pct"] == pytest.approx(p["lookahead_gain_pct"])
    md = lb.markdown(board)
    assert "| 80 % (" in md and "least-requests" in md
    assert [x.name for x in lb.plots(board, tmp_path)] == ["leaderboard-tiny.png"]
    json.dumps(board)


def test_the_heterogeneous_family_runs_two_gpu_generations_behind_one_router():
    from phaser.bench import runner

    fam = lb.FAMILIES["heterogeneous"]
    names = fam.scenario.profile_names()
    assert names.count("a100-llama3-8b") == 4 and names.count("h100-llama3-8b") == 4
    cfg = runner.sim_config(fam.scenario)
    assert cfg.profiles == names
    reqs = lb.family_requests(fam, 0, None, 0)[:200]
    rr, _ = runner.run_one(fam.scenario, "round-robin", 0, requests=reqs)
    wa, _ = runner.run_one(fam.scenario, "workload-aware", 0, requests=reqs)
    assert rr["n_requests"] == wa["n_requests"] == 200 - rr["rejected"]
    with pytest.raises(PhaserError, match="3 profiles for 2 instances"):
        lb.Scenario("bad", "paper-mix", 2, "a100-llama3-8b", 1.0, 10, profiles=("a",) * 3).profile_names()
