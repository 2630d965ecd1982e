"""The live experiments' scoring (``policy_trainer.experiments``): pure helpers only; the
experiments themselves are benchmarks, run by hand (README)."""

from __future__ import annotations

import pytest

from phaser.errors import PhaserError
from policy_trainer.experiments import last_scales, paired_ci, truth_scales


def test_the_truth_is_read_from_the_worker_profiles():
    assert truth_scales("a100-llama3-8b", ["a100-llama3-8b", "a100-llama3-8b@x1.6"]) == [1.0, 1.6]
    with pytest.raises(PhaserError, match="true scale is unknown"):
        truth_scales("a100-llama3-8b", ["h100-llama3-8b"])


def test_paired_gain_and_its_interval():
    m, h = paired_ci([10.0, 10.0, 10.0], [9.0, 9.0, 9.0])
    assert m == pytest.approx(10.0) and h == pytest.approx(0.0)
    m, h = paired_ci([10.0, 10.0, 10.0], [9.0, 10.0, 11.0])  # gains +10, 0, -10 %: t(2) 4.30 x 10/sqrt(3)
    assert m == pytest.approx(0.0, abs=1e-9) and h == pytest.approx(4.303 * 10 / 3 ** 0.5, rel=1e-3)


def test_the_newest_fitted_scales_are_read_from_the_trainer_s_log():
    log = ("phaser.trainer: twin round lost: candidate -1.00% ...; fitted time scales 1, 1.01, 1.5, 1.6; teacher x\n"
           "phaser.trainer: twin round won: candidate +2.00% ...; fitted time scales 1, 1, 1.62, 1.61; teacher x\n")
    assert last_scales(log) == [1.0, 1.0, 1.62, 1.61] and last_scales("nothing") is None


def test_repeats_replay_disjoint_windows_of_a_trace():
    from policy_trainer.experiments import window_spec

    assert window_spec("azure-conv", 0, 3000) == "azure-conv"
    assert window_spec("azure-conv", 2, 3000) == "azure-conv?skip=6000"
    assert window_spec("paper-mix?rate=8>azure-code?rate=2", 1, 2000) == "paper-mix?rate=8>azure-code?rate=2&skip=1000"
