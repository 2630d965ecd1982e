"""power-of-two: two distinct instances drawn at random, the one with fewer
outstanding requests wins (Mitzenmacher's two choices; Ray Serve's default).
Ties go to the first draw. Seeded numpy RNG."""

from __future__ import annotations

import numpy as np

from phaser.policies.base import register


class PowerOfTwo:
    name = "power-of-two"
    version = 0

    def __init__(self, n_instances: int, seed: int = 0):
        self.n = n_instances
        self._rng = np.random.default_rng(seed)

    def decide(self, job, view) -> int:
        if self.n == 1:
            return 0
        a, b = (int(x) for x in self._rng.choice(self.n, size=2, replace=False))
        return b if view.instances[b].outstanding < view.instances[a].outstanding else a


@register("power-of-two")
def make(n_instances: int, seed: int = 0, **_):
    return PowerOfTwo(n_instances, seed)
