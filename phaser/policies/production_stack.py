"""vLLM production-stack's prefix-aware and load-aware routers (field-notes.md).

* ``production-stack-prefix`` — longest prefix match over the router's trie
  of what it routed where (our view's per-instance prefix LRU); among the
  instances sharing the longest match (all of them when nothing matches) the
  one with the fewest requests outstanding.
* ``production-stack-load-aware`` — score = matched fraction − β × relative
  load, where matched fraction = matched prefix blocks ÷ the request's prefix
  blocks and relative load = outstanding ÷ the most outstanding anywhere
  (0 on an idle cluster); the highest score wins. β defaults to 0.5 (our
  choice: the issue names the form, not a default).
"""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


class PSPrefix:
    name = "production-stack-prefix"
    version = 0

    def __init__(self):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        insts = view.instances
        loads = [i.outstanding for i in insts]
        if job.prefix_ids:
            hits = [i.prefix_hits(job.prefix_ids) for i in insts]
            best = max(hits)
            return self._pick.argmin(loads, lambda k: hits[k] == best)
        return self._pick.argmin(loads)


class PSLoadAware:
    name = "production-stack-load-aware"
    version = 0

    def __init__(self, beta: float = 0.5):
        self.beta = float(beta)
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        insts = view.instances
        loads = [i.outstanding for i in insts]
        top = max(loads) or 1
        n = len(job.prefix_ids) if job.prefix_ids else 0
        score = [(i.prefix_hits(job.prefix_ids) / n if n else 0.0) - self.beta * loads[k] / top
                 for k, i in enumerate(insts)]
        return self._pick.argmax(score)


@register("production-stack-prefix")
def make_prefix(n_instances: int, seed: int = 0, **_):
    return PSPrefix()


@register("production-stack-load-aware")
def make_load(n_instances: int, seed: int = 0, beta: float = 0.5, **_):
    return PSLoadAware(beta)
