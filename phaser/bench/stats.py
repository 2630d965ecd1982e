"""Repeat statistics: mean and 95% confidence half-width over K seeds.

The half-width is Student's t: ``t(0.975, K-1) * sd / sqrt(K)`` with the sample
standard deviation. The t quantiles are the standard table values (any
statistics text; e.g. NIST/SEMATECH e-Handbook, table 1.3.6.7.2) for K-1 up to
30, and the normal 1.960 beyond -- no scipy for eleven numbers.
"""

from __future__ import annotations

import math
from typing import Sequence

_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def t975(dof: int) -> float:
    if dof < 1:
        return math.nan
    if dof in _T975:
        return _T975[dof]
    if dof > 30:
        return 1.960
    # between table rows: the next smaller tabulated dof (conservative: wider interval)
    return _T975[max(k for k in _T975 if k <= dof)]


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
