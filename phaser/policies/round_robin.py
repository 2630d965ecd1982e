"""round-robin: instances in turn, ignoring load. The baseline everything is
measured against."""

from __future__ import annotations

from phaser.policies.base import register


class RoundRobin:
    name = "round-robin"
    version = 0

    def __init__(self, n_instances: int):
        self.n = n_instances
        self._next = 0

    def decide(self, job, view) -> int:
        i = self._next
        self._next = (i + 1) % self.n
        return i


@register("round-robin")
def make(n_instances: int, seed: int = 0, **_):
    return RoundRobin(n_instances)
