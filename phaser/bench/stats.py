"""Repeat statistics: mean and 95% confidence half-width over K seeds.

The half-width is Student's t: ``t(0.975, K-1) * sd / sqrt(K)`` with the sample
standard deviation; the quantile is scipy's (``scipy.stats.t.ppf``).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence


@lru_cache(maxsize=256)
def t975(dof: int) -> float:
    """Student's t 0.975 quantile with ``dof`` degrees of freedom (NaN below 1)."""
    if dof < 1:
        return math.nan
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def mean_ci(values: Sequence[float]) -> tuple[float, float]:
    """(mean, 95% half-width); half-width 0 for a single value."""
    k = len(values)
    if k == 0:
        return math.nan, math.nan
    m = sum(values) / k
    if k == 1:
        return m, 0.0
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (k - 1))
    return m, t975(k - 1) * sd / math.sqrt(k)
