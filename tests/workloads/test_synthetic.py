"""Generators hit their target means, shares and CV within 5% on 20,000 samples."""

from __future__ import annotations

import numpy as np
import pytest

from load_generator.registry import DATA_DIR, LENGTH_FILES
from load_generator.synthetic import arrivals as arr
from load_generator.synthetic.lengths import EmpiricalLengths, lognormal, read_length_file
from phaser.errors import PhaserError

N = 20_000


def _rate_cv(t: np.ndarray) -> tuple[float, float]:
    gaps = np.diff(np.concatenate([[0.0], t]))
    return 1.0 / gaps.mean(), gaps.std() / gaps.mean()


def test_poisson_rate_and_cv():
    t = arr.poisson(N, 20.0, np.random.default_rng(1))
    rate, cv = _rate_cv(t)
    assert rate == pytest.approx(20.0, rel=0.05)
    assert cv == pytest.approx(1.0, rel=0.05)
    assert np.all(np.diff(t) >= 0)


@pytest.mark.parametrize("cv_target", [0.5, 2.0, 4.0])
def test_gamma_hits_rate_and_burstiness(cv_target):
    t = arr.gamma(N, 40.0, cv_target, np.random.default_rng(2))
    rate, cv = _rate_cv(t)
    assert rate == pytest.approx(40.0, rel=0.05)
    assert cv == pytest.approx(cv_target, rel=0.05)


def test_sinusoidal_rate_follows_its_phase():
    fn, rmax = arr.sinusoidal_rate(50.0, 0.8, 10.0)
    t = arr.varying(N, fn, rmax, np.random.default_rng(3))
    whole = t[t < np.floor(t[-1] / 10.0) * 10.0]  # whole periods only
    assert len(whole) / (np.floor(t[-1] / 10.0) * 10.0) == pytest.approx(50.0, rel=0.05)
    phase = np.mod(whole, 10.0)
    high, low = np.sum(phase < 5.0), np.sum(phase >= 5.0)  # sin > 0 in the first half period
    # expected split: mean*(5 + 0.8*10/pi) vs mean*(5 - 0.8*10/pi)
    assert high / low == pytest.approx((5 + 8 / np.pi) / (5 - 8 / np.pi), rel=0.05)


def test_piecewise_rate_has_the_segment_rates():
    fn, rmax = arr.piecewise_rate([(10.0, 10.0), (10.0, 90.0)])
    t = arr.varying(N, fn, rmax, np.random.default_rng(4))
    cycles = np.floor(t[-1] / 20.0)
    t = t[t < cycles * 20.0]
    first = np.mod(t, 20.0) < 10.0
    assert first.sum() / (cycles * 10) == pytest.approx(10.0, rel=0.05)
    assert (~first).sum() / (cycles * 10) == pytest.approx(90.0, rel=0.05)


def test_bad_arrival_parameters_are_user_errors():
    with pytest.raises(PhaserError):
        arr.poisson(10, 0.0, np.random.default_rng())
    with pytest.raises(PhaserError):
        arr.gamma(10, 1.0, -1.0, np.random.default_rng())
    with pytest.raises(PhaserError):
        arr.sinusoidal_rate(10.0, 1.5, 10.0)


@pytest.mark.parametrize("mean, sigma, cap", [(50.0, 0.5, 1000), (400.0, 1.0, 2048), (211.54, 0.75, 1000)])
def test_capped_lognormal_hits_its_mean_after_the_cap(mean, sigma, cap):
    d = lognormal(mean, sigma, 1, cap)
    assert d.mean == pytest.approx(mean, rel=1e-6)
    x = d.sample(N, np.random.default_rng(5))
    assert x.min() >= 1 and x.max() <= cap
    assert x.mean() == pytest.approx(mean, rel=0.05)
    assert np.log(x).std() == pytest.approx(sigma, rel=0.15)  # shape survives discretization and cap roughly


def test_empirical_lengths_reproduce_the_file_and_respect_caps():
    lf = read_length_file(DATA_DIR / LENGTH_FILES["sharegpt"])
    assert len(lf.prompt) + lf.skipped == 30731
    p, o = EmpiricalLengths(lf).sample(N, np.random.default_rng(6))
    assert p.mean() == pytest.approx(lf.prompt.mean(), rel=0.05)
    assert o.mean() == pytest.approx(lf.output.mean(), rel=0.05)
    assert (o >= 147).mean() == pytest.approx((lf.output >= 147).mean(), rel=0.05)
    pc, oc = EmpiricalLengths(lf, prompt_cap=1000, output_cap=256).sample(N, np.random.default_rng(6))
    assert pc.max() == 1000 and oc.max() == 256
