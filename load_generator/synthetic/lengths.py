"""Length distributions: empirical (from a length-stats file) or parametric (log-normal), with caps.

* ``read_length_file``: the Sarathi/Vidur stats format
  (``num_prefill_tokens,num_decode_tokens,...``); rows with 0 decode tokens are
  skipped and counted. ``EmpiricalLengths`` draws whole rows (prompt and decode
  stay paired, so their correlation survives) with replacement.
* ``DiscreteDist``: a distribution over integers ``lo..hi`` given by a pmf.
  ``lognormal(mean, sigma, lo, hi)`` discretizes a log-normal density at the
  integers of ``[lo, hi]`` (pmf ∝ pdf(k), renormalized) and solves its ``mu``
  by bisection so that the *capped, discretized* mean equals ``mean`` exactly
  — a cap changes the mean, and we want the stated mean after the cap.
  ``splice(low, high, w_high)`` joins two pieces on disjoint ranges with
  weights ``(1 - w_high, w_high)``; ``paper_mix`` uses it for heavy decode.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from load_generator.readers.common import csv_rows, parse_int
from phaser.errors import PhaserError


@dataclass(frozen=True)
class DiscreteDist:
    values: np.ndarray  # int64, ascending
    probs: np.ndarray   # float64, sums to 1

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.probs))

    def share_at_least(self, threshold: int) -> float:
        return float(self.probs[self.values >= threshold].sum())

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cdf = np.cumsum(self.probs)
        idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
        return self.values[np.minimum(idx, len(self.values) - 1)]


def lognormal_pmf(mu: float, sigma: float, ks: np.ndarray) -> np.ndarray:
    logk = np.log(ks)
    # log of pdf(k) = -(ln k - mu)^2 / (2 sigma^2) - ln k  (+ const); stabilized before exp
    lp = -((logk - mu) ** 2) / (2 * sigma * sigma) - logk
    p = np.exp(lp - lp.max())
    return p / p.sum()


def lognormal(mean: float, sigma: float, lo: int, hi: int) -> DiscreteDist:
    """Log-normal shape ``sigma`` on the integers ``lo..hi`` whose mean is exactly ``mean``."""
    if not (lo >= 1 and hi >= lo):
        raise PhaserError(f"length range must satisfy 1 <= lo <= hi, got [{lo}, {hi}]")
    if not (lo < mean < hi) and not (lo == hi == mean):
        raise PhaserError(f"a mean of {mean} tokens is not reachable within [{lo}, {hi}]")
    if not sigma > 0:
        raise PhaserError(f"log-normal sigma must be > 0, got {sigma}")
    ks = np.arange(lo, hi + 1, dtype=np.int64)
    if lo == hi:
        return DiscreteDist(ks, np.ones(1))
    kf = ks.astype(float)
    a, b = math.log(lo) - 10 * sigma, math.log(hi) + 10 * sigma  # mean(mu) is increasing in mu
    for _ in range(100):
        mid = 0.5 * (a + b)
        if float(np.dot(kf, lognormal_pmf(mid, sigma, kf))) < mean:
            a = mid
        else:
            b = mid
    return DiscreteDist(ks, lognormal_pmf(0.5 * (a + b), sigma, kf))


def splice(low: DiscreteDist, high: DiscreteDist, w_high: float) -> DiscreteDist:
    if low.values[-1] >= high.values[0]:
        raise PhaserError("spliced pieces must not overlap")
    return DiscreteDist(np.concatenate([low.values, high.values]),
                        np.concatenate([low.probs * (1 - w_high), high.probs * w_high]))


@dataclass(frozen=True)
class LengthFile:
    prompt: np.ndarray
    output: np.ndarray
    skipped: int  # rows with 0 decode tokens


def read_length_file(path: str | Path) -> LengthFile:
    prompts, outputs, skipped = [], [], 0
    for line, row in csv_rows(path, ["num_prefill_tokens", "num_decode_tokens"]):
        p = parse_int(row["num_prefill_tokens"], path, line, "num_prefill_tokens", minimum=0)
        d = parse_int(row["num_decode_tokens"], path, line, "num_decode_tokens", minimum=0)
        if p == 0 or d == 0:
            skipped += 1
            continue
        prompts.append(p)
        outputs.append(d)
    if not prompts:
        raise PhaserError(f"{path}: no usable rows")
    return LengthFile(np.array(prompts, dtype=np.int64), np.array(outputs, dtype=np.int64), skipped)


@dataclass(frozen=True)
class EmpiricalLengths:
    """Draw (prompt, output) rows from a length file, optionally capping each."""

    data: LengthFile
    prompt_cap: int | None = None
    output_cap: int | None = None

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, len(self.data.prompt), size=n)
        p, o = self.data.prompt[idx], self.data.output[idx]
        if self.prompt_cap:
            p = np.minimum(p, self.prompt_cap)
        if self.output_cap:
            o = np.minimum(o, self.output_cap)
        return p, o
