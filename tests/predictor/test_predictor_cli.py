"""phaser predictor fit / eval: the operator's path to a fitted model and its
accuracy report (held out, against the global-mean predictor)."""

import json

from phaser.cli.main import main
from phaser.predictor import LengthPredictor


def test_fit_then_eval_reports_accuracy_against_the_mean(tmp_path, capsys):
    model = tmp_path / "models" / "len.json"
    assert main(["predictor", "fit", "--workload", "paper-mix", "-n", "3000", "--out", str(model)]) == 0
    p = LengthPredictor.load(model)
    assert p.n_samples == 3000 and p.meta == {"workload": "paper-mix", "n": 3000, "seed": 0, "skip": 0}
    capsys.readouterr()
    rep_path = tmp_path / "rep.json"
    assert main(["predictor", "eval", str(model), "--workload", "paper-mix", "-n", "1500", "--json", str(rep_path)]) == 0
    out = capsys.readouterr().out
    assert "global mean" in out and "in-sample" not in out  # eval's seed 1 is held out from fit's seed 0
    rep = json.loads(rep_path.read_text())
    assert rep["predictor"]["n"] == rep["global_mean"]["n"] == 1500
    assert rep["predictor"]["mae"] < 0.9 * rep["global_mean"]["mae"]
    assert sum(rep["predictor"]["bucket_counts"]) == 1500


def test_trace_replay_is_held_out_with_skip_and_overlap_is_flagged(tmp_path, capsys):
    model = tmp_path / "conv.json"
    assert main(["predictor", "fit", "-w", "azure-conv", "-n", "2000", "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["predictor", "eval", str(model), "-w", "azure-conv", "-n", "500", "--skip", "0"]) == 0
    assert "in-sample" in capsys.readouterr().out  # a replay ignores the seed: same requests
    rep_path = tmp_path / "rep.json"
    assert main(["predictor", "eval", str(model), "-w", "azure-conv", "-n", "500", "--skip", "2000",
                 "--json", str(rep_path)]) == 0
    assert "in-sample" not in capsys.readouterr().out
    rep = json.loads(rep_path.read_text())
    assert rep["predictor"]["mae"] < rep["global_mean"]["mae"]  # prompt length alone beats the mean
    # defaults: the fitted workload, its fitted requests skipped
    assert main(["predictor", "eval", str(model), "-n", "500", "--json", str(rep_path)]) == 0
    assert "in-sample" not in capsys.readouterr().out
    again = json.loads(rep_path.read_text())
    assert (again["workload"], again["skip"]) == ("azure-conv", 2000) and again["predictor"] == rep["predictor"]


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["predictor", "eval", str(tmp_path / "missing.json"), "-w", "paper-mix"]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    assert main(["predictor", "eval", str(bad), "-w", "paper-mix"]) == 2
    assert main(["predictor", "fit", "-w", "paper-mix", "-n", "0", "-o", str(tmp_path / "x.json")]) == 2
    assert main(["predictor", "fit", "-w", "/no/such.csv", "-o", str(tmp_path / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
