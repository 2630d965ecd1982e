"""least-requests: the instance with the fewest outstanding requests (assigned
by this router and not yet completed -- its own bookkeeping, never stale). The
join-shortest-queue of production routers (vLLM Router, AIBrix least-request).
Ties rotate."""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


class LeastRequests:
    name = "least-requests"
    version = 0

    def __init__(self, n_instances: int):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        return self._pick.argmin([i.outstanding for i in view.instances])

    @property
    def ties(self) -> list[int]:
        """The instances the last decision found equally good (its pick is one of them)."""
        return list(self._pick.last_ties)


@register("least-requests")
def make(n_instances: int, seed: int = 0, **_):
    return LeastRequests(n_instances)
