"""workload-aware: the paper's mixing heuristic -- the instance with the
smallest α·prefill impact + (1−α)·decode impact (α = 0.5, ε = 5 ms; formulas
and their derivation in ``phaser.policies.mixing``). Options ``alpha`` and
``eps`` override the defaults. Ties rotate."""

from __future__ import annotations

from phaser.errors import PhaserError
from phaser.policies._select import RotatingArg
from phaser.policies.base import register
from phaser.policies.mixing import ALPHA, EPS_S, penalty_array


class WorkloadAware:
    name = "workload-aware"
    version = 0

    def __init__(self, n_instances: int, alpha: float = ALPHA, eps: float = EPS_S):
        if not 0.0 <= alpha <= 1.0:
            raise PhaserError(f"workload-aware: alpha must be in [0, 1], got {alpha}")
        if eps < 0:
            raise PhaserError(f"workload-aware: eps must be >= 0 seconds, got {eps}")
        self.alpha, self.eps = float(alpha), float(eps)
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        return self._pick.argmin_array(penalty_array(job, view, self.alpha, self.eps))

    @property
    def ties(self) -> list[int]:
        """The instances the last decision found equally good (its pick is one of them)."""
        return list(self._pick.last_ties)


@register("workload-aware")
def make(n_instances: int, seed: int = 0, alpha: float = ALPHA, eps: float = EPS_S, **_):
    return WorkloadAware(n_instances, alpha, eps)
