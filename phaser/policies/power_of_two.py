"""power-of-two: two distinct instances drawn at random, the one with fewer
outstanding requests wins (Mitzenmacher's two choices). Ties go to the first
draw. Seeded numpy RNG.

Also registered as ``ray-serve``: Ray Serve LLM's default request router is
exactly this rule on replica queue length (ongoing requests; field-notes.md),
so the production peer and our heuristic are one implementation. (Ray's
``max_ongoing_requests`` cap never changes the pick between two replicas: the
one at the cap always has more ongoing requests than one below it.)"""

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


@register("ray-serve")
def make_ray(n_instances: int, seed: int = 0, **_):
    p = PowerOfTwo(n_instances, seed)
    p.name = "ray-serve"
    return p
