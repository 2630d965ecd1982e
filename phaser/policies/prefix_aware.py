"""prefix-aware: prefer the instance that holds the longest cached run of the
request's prefix blocks, bounded by a load limit, else the least-loaded one.

Load limit (as SGLang's cache-aware router and the vLLM Router do it): an
instance is eligible for a cache hit only while its outstanding requests are at
most ``max(min_load * balance_rel, min_load + balance_abs)`` -- defaults 1.5
and 4 -- so cache affinity cannot pile a popular prefix onto one instance.
Among eligible instances the longest hit wins, ties to fewer tokens left; with
no hit anywhere (or no prefix ids) it falls back to least tokens left."""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


class PrefixAware:
    name = "prefix-aware"
    version = 0

    def __init__(self, n_instances: int, balance_rel: float = 1.5, balance_abs: int = 4):
        self.rel, self.abs = float(balance_rel), int(balance_abs)
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        insts = view.instances
        tokens = [i.tokens_left for i in insts]
        if job.prefix_ids:
            loads = [i.outstanding for i in insts]
            lo = min(loads)
            limit = max(lo * self.rel, lo + self.abs)
            hits = [i.prefix_hits(job.prefix_ids) if loads[k] <= limit else 0 for k, i in enumerate(insts)]
            best = max(hits)
            if best > 0:
                # longest hit first, then fewest tokens left
                return self._pick.argmin(tokens, lambda k: hits[k] == best)
        return self._pick.argmin(tokens)

    @property
    def ties(self) -> list[int]:
        """The instances the last decision found equally good (its pick is one of them)."""
        return list(self._pick.last_ties)


@register("prefix-aware")
def make(n_instances: int, seed: int = 0, balance_rel: float = 1.5, balance_abs: int = 4, **_):
    return PrefixAware(n_instances, balance_rel, balance_abs)
