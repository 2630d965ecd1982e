"""phaser train: user mistakes are one-line errors; a minimal run writes a loadable checkpoint."""

from phaser.cli.main import main
from phaser.rl.checkpoint import load_checkpoint


def test_bad_flags_are_user_errors(tmp_path, capsys):
    assert main(["train", "--variant", "rl-magic", "--out", str(tmp_path)]) == 2
    assert "unknown variant 'rl-magic'" in capsys.readouterr().err
    assert main(["train", "--set", "gama=0.9", "--out", str(tmp_path)]) == 2
    assert "bad --set 'gama=0.9'" in capsys.readouterr().err
    assert main(["train", "--set", "gamma=high", "--out", str(tmp_path)]) == 2
    assert main(["train", "--scenario", "nope", "--out", str(tmp_path)]) == 2
    # a whole trace trains on its windows; one hour in 3,000 s windows is too few of them
    assert main(["train", "--scenario", "azure-code", "--window-s", "3000", "--out", str(tmp_path)]) == 2
    assert "too short for 3000 s windows" in capsys.readouterr().err
    assert main(["train", "--arch", "cnn", "--out", str(tmp_path)]) == 2


ARGS = ["train", "--scenario", "paper-v100", "--variant", "rl-aware", "--episodes", "2", "-n", "40",
        "--eval-every", "2", "--eval-seeds", "1", "--baselines", "least-requests", "--seed", "3",
        "--set", "learning_starts=16", "--set", "batch_size=8", "--set", "hidden=8,8"]


def test_minimal_run_writes_checkpoint_and_curves_reproducibly(tmp_path):
    out = tmp_path / "ck"
    assert main(ARGS + ["--out", str(out)]) == 0
    ck = load_checkpoint(out)
    assert ck.variant == "rl-aware" and ck.n_instances == 4 and ck.metadata["config"]["hidden"] == [8, 8]
    stats = ck.metadata["stats"]
    assert stats["episodes"] == 2 and stats["updates"] > 0
    assert set(stats["eval_baselines"]) == {"round-robin", "least-requests"}
    assert (out / "curves.csv").exists() and (out / "curves.png").exists()
    # same seed, same everything: bit-identical weights in a second run
    assert main(ARGS + ["--out", str(tmp_path / "again")]) == 0
    again = load_checkpoint(tmp_path / "again")
    assert all(again.params[k].tobytes() == ck.params[k].tobytes() for k in ck.params)


def test_rate_override_is_the_training_scenarios_rate(tmp_path):
    out = tmp_path / "hi"
    assert main(ARGS + ["--rate", "30", "--episodes", "1", "--eval-every", "1", "--out", str(out)]) == 0
    meta = load_checkpoint(out).metadata
    assert meta["scenario"]["rate"] == 30.0 and meta["scenario"]["name"] == "paper-v100"
