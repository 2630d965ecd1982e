"""Tie-breaking argmin/argmax shared by the heuristic policies.

Ties are broken by a rotating start index, not by "lowest index wins": on an
idle or symmetric cluster a fixed tie-break would pile every request onto
instance 0 until its load shows up in the view.
"""

from __future__ import annotations

from typing import Callable, Sequence


class RotatingArg:
    """argmin over instances with rotating tie-break; deterministic, no RNG."""

    __slots__ = ("_start", "last_ties")

    def __init__(self) -> None:
        self._start = 0
        #: the allowed instances that shared the best value at the last call (the pick among them)
        self.last_ties: list[int] = []

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
        """``argmin`` of a numpy array (every instance allowed), without a Python loop: the
        same pick and ``last_ties`` as ``argmin`` -- the first of the equal minima at or
        after the rotating start."""
        import numpy as np

        n = len(values)
        if n == 0:
            raise ValueError("no allowed instance")
        ties = np.flatnonzero(values == values.min())
        s = self._start
        k = int(np.searchsorted(ties, s))
        order = np.concatenate((ties[k:], ties[:k])) if k else ties
        best = int(order[0])
        self.last_ties = order.tolist()
        self._start = (best + 1) % n
        return best

    def argmax(self, values: Sequence[float], allowed: Callable[[int], bool] | None = None) -> int:
        return self.argmin([-v for v in values], allowed)
