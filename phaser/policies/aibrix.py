"""AIBrix's least-kv-cache and least-latency routing strategies (field-notes.md).

* ``aibrix-least-kv-cache`` — the instance whose engine last reported the
  lowest KV-cache usage (the heartbeat's, stale by its period, as AIBrix's
  50 ms metric cache is). Ties rotate.
* ``aibrix-least-latency`` — the instance with the lowest recent average
  request latency: AIBrix reads the engines' latency metrics; our view keeps
  the equivalent from what the router observes, an EWMA of
  assignment-to-completion time per instance (``InstanceView.latency_ewma_s``).
  Instances with no completion yet count as 0 (tried first), as a fresh pod
  with no latency samples is in AIBrix.
"""

from __future__ import annotations

import math

from phaser.policies._select import RotatingArg
from phaser.policies.base import register
from phaser.policies.scoring import kv_usage


class LeastKVCache:
    name = "aibrix-least-kv-cache"
    version = 0

    def __init__(self):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        return self._pick.argmin([kv_usage(i) for i in view.instances])


class LeastLatency:
    name = "aibrix-least-latency"
    version = 0

    def __init__(self):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        return self._pick.argmin([0.0 if math.isnan(i.latency_ewma_s) else i.latency_ewma_s for i in view.instances])


@register("aibrix-least-kv-cache")
def make_kv(n_instances: int, seed: int = 0, **_):
    return LeastKVCache()


@register("aibrix-least-latency")
def make_latency(n_instances: int, seed: int = 0, **_):
    return LeastLatency()
