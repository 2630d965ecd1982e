"""max-capacity: the instance with the most free KV capacity, among those
where the request (prompt + predicted output tokens) fits; if it fits nowhere,
the one with the most free capacity anyway (paper's "max capacity usage"
baseline). Free capacity is the view's estimate, corrected by heartbeats."""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


class MaxCapacity:
    name = "max-capacity"
    version = 0

    def __init__(self, n_instances: int):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        free = [i.free_kv_tokens for i in view.instances]
        need = job.prompt_tokens + job.predicted_tokens
        if any(f >= need for f in free):
            return self._pick.argmax(free, lambda k: free[k] >= need)
        return self._pick.argmax(free)


@register("max-capacity")
def make(n_instances: int, seed: int = 0, **_):
    return MaxCapacity(n_instances)
