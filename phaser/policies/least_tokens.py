"""least-tokens: fewest prompt tokens still to prefill plus predicted decode
tokens left (the paper's join-shortest-queue baseline). Ties rotate."""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


class LeastTokens:
    name = "least-tokens"
    version = 0

    def __init__(self, n_instances: int):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        return self._pick.argmin([i.tokens_left for i in view.instances])


@register("least-tokens")
def make(n_instances: int, seed: int = 0, **_):
    return LeastTokens(n_instances)
