"""sglang-cache-aware: the SGLang model gateway's (and vLLM Router's)
cache-aware policy (field-notes.md).

* **Imbalanced** cluster — ``max_load − min_load > balance_abs_threshold``
  *and* ``max_load > balance_rel_threshold × min_load`` (load = requests the
  router has outstanding there) — route to the shortest queue.
* Otherwise: the instance with the longest prefix match wins if its match
  rate (matched ÷ the request's prefix blocks) exceeds ``cache_threshold``;
  else the instance whose approximate tree is smallest (``tree_tokens``), to
  spread new prefixes.

Defaults are the gateway's: cache_threshold 0.5, balance_abs_threshold 32,
balance_rel_threshold 1.0001. The radix tree is approximated by the view's
per-instance LRU of routed prefix blocks (the gateway's tree is also built
from the requests it routed, not from the engines' caches). Unlike
``prefix-aware`` (phaser's own, which caps cache affinity per request with a
load limit), the balance check here is global and the no-match fallback is
the smallest tree, not the least work.
"""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register


def tree_tokens(inst) -> int:
    """Approximate size of the gateway's tree for an instance: the prompt tokens of the
    requests the router has outstanding there (their text is in the tree), plus the
    512-token prefix blocks it placed there that are not among them. The gateway's
    tree also keeps finished requests' text until LRU eviction; ours forgets a
    request's prompt when it completes, so "smallest tree" leans towards least load."""
    return int(inst._prompt_all) + 512 * len(inst._prefix)


class SGLangCacheAware:
    name = "sglang-cache-aware"
    version = 0

    def __init__(self, n_instances: int, cache_threshold: float = 0.5, balance_abs_threshold: int = 32,
                 balance_rel_threshold: float = 1.0001):
        self.cache_t, self.abs_t, self.rel_t = float(cache_threshold), int(balance_abs_threshold), float(balance_rel_threshold)
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        insts = view.instances
        loads = [i.outstanding for i in insts]
        lo, hi = min(loads), max(loads)
        if hi - lo > self.abs_t and hi > self.rel_t * lo:
            return self._pick.argmin(loads)
        if job.prefix_ids:
            hits = [i.prefix_hits(job.prefix_ids) for i in insts]
            best = max(hits)
            if best / len(job.prefix_ids) > self.cache_t:
                return self._pick.argmin(loads, lambda k: hits[k] == best)
        return self._pick.argmin([tree_tokens(i) for i in insts])


@register("sglang-cache-aware")
def make(n_instances: int, seed: int = 0, cache_threshold: float = 0.5, balance_abs_threshold: int = 32,
         balance_rel_threshold: float = 1.0001, **_):
    return SGLangCacheAware(n_instances, cache_threshold, balance_abs_threshold, balance_rel_threshold)
