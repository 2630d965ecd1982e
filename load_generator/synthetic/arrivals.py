"""Arrival processes: Poisson, Gamma with a chosen burstiness, and time-varying rates.

All functions are pure: they take a ``numpy.random.Generator`` and return a
sorted ``float64`` array of ``n`` arrival times in seconds, the first one at
the first inter-arrival gap after 0 (not at 0 itself).

* ``poisson``: exponential gaps, mean ``1/rate`` (CV 1). The paper drives its
  cluster with Poisson arrivals at 20 req/s.
* ``gamma``: Gamma gaps with shape ``k = 1/cv**2`` and scale ``1/(rate*k)``, so
  the mean gap is ``1/rate`` and the coefficient of variation of the gaps is
  ``cv`` (cv > 1 bursty, < 1 smoother than Poisson, = 1 Poisson).
* ``varying``: a non-homogeneous Poisson process with rate ``rate_fn(t)``,
  drawn by thinning (Lewis & Shedler 1979): candidates at ``rate_max``, each
  kept with probability ``rate_fn(t)/rate_max``.
  ``piecewise_rate([(duration_s, rate), ...])`` (repeats its cycle) and
  ``sinusoidal_rate(mean, amplitude, period_s)`` build ``rate_fn``s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from phaser.errors import PhaserError


def _check(n: int, rate: float) -> None:
    if n < 0:
        raise PhaserError(f"request count must be >= 0, got {n}")
    if not (rate > 0 and math.isfinite(rate)):
        raise PhaserError(f"arrival rate must be a positive number of requests per second, got {rate}")


def poisson(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    _check(n, rate)
    return np.cumsum(rng.exponential(1.0 / rate, size=n))


def gamma(n: int, rate: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    _check(n, rate)
    if not (cv > 0 and math.isfinite(cv)):
        raise PhaserError(f"burstiness (CV of inter-arrivals) must be > 0, got {cv}")
    k = 1.0 / (cv * cv)
    return np.cumsum(rng.gamma(k, 1.0 / (rate * k), size=n))


def varying(n: int, rate_fn: Callable[[np.ndarray], np.ndarray], rate_max: float,
            rng: np.random.Generator) -> np.ndarray:
    """Non-homogeneous Poisson arrivals by thinning; ``rate_fn`` is vectorized over times."""
    _check(n, rate_max)
    out: list[np.ndarray] = []
    have, t = 0, 0.0
    while have < n:
        chunk = max(1024, 2 * (n - have))
        cand = t + np.cumsum(rng.exponential(1.0 / rate_max, size=chunk))
        t = float(cand[-1])
        lam = np.asarray(rate_fn(cand), dtype=float)
        if np.any(lam > rate_max * (1 + 1e-9)) or np.any(lam < 0):
            raise PhaserError("time-varying rate must stay within [0, rate_max]")
        kept = cand[rng.random(chunk) * rate_max < lam]
        out.append(kept)
        have += kept.size
    return np.concatenate(out)[:n]


def piecewise_rate(segments: Sequence[tuple[float, float]]) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """``[(duration_s, rate), ...]`` repeated cyclically -> (rate_fn, rate_max)."""
    if not segments or any(d <= 0 or r < 0 for d, r in segments) or max(r for _, r in segments) <= 0:
        raise PhaserError("piecewise rate needs segments of positive duration and rates >= 0 (one > 0)")
    ends = np.cumsum([d for d, _ in segments])
    rates = np.array([r for _, r in segments], dtype=float)
    cycle = float(ends[-1])

    def fn(t: np.ndarray) -> np.ndarray:
        return rates[np.searchsorted(ends, np.mod(t, cycle), side="right").clip(max=len(rates) - 1)]

    return fn, float(rates.max())


def sinusoidal_rate(mean: float, amplitude: float, period_s: float) -> tuple[Callable[[np.ndarray], np.ndarray], float]:
    """rate(t) = mean * (1 + amplitude * sin(2*pi*t/period)), amplitude in [0, 1]."""
    if not (mean > 0 and 0 <= amplitude <= 1 and period_s > 0):
        raise PhaserError("sinusoidal rate needs mean > 0, amplitude in [0, 1] and period > 0")
    w = 2 * math.pi / period_s
    return (lambda t: mean * (1 + amplitude * np.sin(w * t))), mean * (1 + amplitude)
