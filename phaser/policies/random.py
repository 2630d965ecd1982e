"""random: a uniformly random instance from a seeded RNG (numpy PCG64), so a
run is reproducible for a given seed."""

from __future__ import annotations

import numpy as np

from phaser.policies.base import register


class RandomPolicy:
    name = "random"
    version = 0

    def __init__(self, n_instances: int, seed: int = 0):
        self.n = n_instances
        self._rng = np.random.default_rng(seed)

    def decide(self, job, view) -> int:
        return int(self._rng.integers(self.n))


@register("random")
def make(n_instances: int, seed: int = 0, **_):
    return RandomPolicy(n_instances, seed)
