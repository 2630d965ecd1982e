"""workload_stats on hand-computable inputs, and the CLI that prints/writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from load_generator.stats import workload_stats
from load_generator.trace import make_request
from phaser.cli.main import main

FIX = Path(__file__).parent / "fixtures"


def test_stats_by_hand():
    reqs = [make_request("a", 0.0, 10, 100, task="x"), make_request("b", 1.0, 20, 200, task="y"),
            make_request("c", 3.0, 30, 147, task="x"), make_request("d", 4.0, 40, 146)]
    s = workload_stats(reqs)
    assert s["count"] == 4 and s["duration_s"] == 4.0 and s["rate"] == 0.75
    # gaps 1, 2, 1: mean 4/3, population std sqrt(2/9)
    assert s["cv"] == pytest.approx((2 / 9) ** 0.5 / (4 / 3))
    assert s["prompt"] == pytest.approx({"mean": 25.0, "p50": 25.0, "p90": 37.0, "p99": 39.7, "max": 40.0})
    assert s["output"]["max"] == 200.0 and s["output"]["mean"] == pytest.approx(148.25)
    assert s["heavy_decode_share"] == 0.5  # 200 and 147 (>= 147), not 146
    assert s["tasks"]["x"] == {"count": 2, "share": 0.5, "prompt_mean": 20.0, "output_mean": 123.5, "heavy_decode_share": 0.5}
    assert s["tasks"]["-"]["count"] == 1 and s["tasks"]["y"]["heavy_decode_share"] == 1.0



def test_cli_stats_writes_json(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["workload", "stats", "paper-mix", "-n", "500", "--json", str(out)]) == 0
    s = json.loads(out.read_text())
    for key in ("count", "duration_s", "rate", "cv", "prompt", "output", "tasks"):
        assert key in s
    assert s["count"] == 500
    assert set(s["prompt"]) >= {"mean", "p50", "p90", "p99", "max"}
    assert set(s["tasks"]["eli5"]) >= {"share", "prompt_mean", "output_mean", "heavy_decode_share"}
    assert "burstiness" in capsys.readouterr().out


def test_cli_stats_reports_skipped_rows_and_bad_files(capsys):
    assert main(["workload", "stats", str(FIX / "burstgpt_small.csv")]) == 0
    assert "skipped: failed (0 response tokens)" in capsys.readouterr().out
    assert main(["workload", "stats", str(FIX / "simple_bad.csv")]) == 2
    err = capsys.readouterr().err
    assert "simple_bad.csv:4" in err and "Traceback" not in err


def test_cli_export_then_stats(tmp_path):
    out = tmp_path / "w.jsonl"
    assert main(["workload", "export", "sharegpt", "-n", "50", "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 50
    assert main(["workload", "stats", str(out)]) == 0
