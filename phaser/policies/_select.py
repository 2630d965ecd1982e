"""Tie-breaking argmin/argmax shared by the heuristic policies.

Ties are broken by a rotating start index, not by "lowest index wins": on an
idle or symmetric cluster a fixed tie-break would pile every request onto
instance 0 until its load shows up in the view.
"""

from __future__ import annotations

from typing import Callable, Sequence

from numba import njit


@njit(cache=True)
def _rotating_argmin(values, start):
    """The first of the equal minima of ``values`` at or after ``start``, cyclically."""
    n = values.shape[0]
    best = values[0]
    for i in range(1, n):
        if values[i] < best:
            best = values[i]
    for k in range(n):
        i = (start + k) % n
        if values[i] == best:
            return i
    return start  # only NaN values: none equals their minimum; keep the rotation moving


class RotatingArg:
    """argmin over instances with rotating tie-break; deterministic, no RNG."""

    __slots__ = ("_start", "_ties", "_lazy")

    def __init__(self) -> None:
        self._start = 0
        self._ties: list[int] = []
        self._lazy = None  # (values, start) of the last ``argmin_array``: its ties, found when asked

    @property
    def last_ties(self) -> list[int]:
        """The allowed instances that shared the best value at the last call (the pick among them)."""
        if self._lazy is not None:
            import numpy as np

            values, s = self._lazy
            ties = np.flatnonzero(values == values.min())
            k = int(np.searchsorted(ties, s))
            self._ties = (np.concatenate((ties[k:], ties[:k])) if k else ties).tolist()
            self._lazy = None
        return self._ties

    @last_ties.setter
    def last_ties(self, ties: list[int]) -> None:
        self._ties, self._lazy = ties, None

    def argmin(self, values: Sequence[float], allowed: Callable[[int], bool] | None = None) -> int:
        n = len(values)
        best, best_v = -1, 0.0
        ties: list[int] = []
        s = self._start
        for k in range(n):
            i = (s + k) % n
            if allowed is not None and not allowed(i):
                continue
            v = values[i]
            if best < 0 or v < best_v:
                best, best_v = i, v
                ties = [i]
            elif v == best_v:
                ties.append(i)
        if best < 0:
            raise ValueError("no allowed instance")
        self.last_ties = ties
        self._start = (best + 1) % n
        return best

    def argmin_array(self, values) -> int:
        """``argmin`` of a numpy float array (every instance allowed), compiled: the same pick
        and ``last_ties`` as ``argmin`` -- the first of the equal minima at or after the
        rotating start (the tie set is computed only if ``last_ties`` is read)."""
        n = len(values)
        if n == 0:
            raise ValueError("no allowed instance")
        s = self._start
        best = int(_rotating_argmin(values, s))
        self._lazy = (values, s)
        self._start = (best + 1) % n
        return best

    def argmax(self, values: Sequence[float], allowed: Callable[[int], bool] | None = None) -> int:
        return self.argmin([-v for v in values], allowed)
