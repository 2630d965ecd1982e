"""llm-d's scheduling profiles (the Gateway API inference extension's endpoint
picker as llm-d configures it), composed from ``phaser.policies.scoring``.

* ``llm-d`` — the default profile: prefix-cache scorer weight 3, queue scorer
  2, KV-utilization scorer 2, max-score picker (field-notes.md; llm-d's
  "intelligent inference scheduling" well-lit path).
* ``llm-d-load-aware`` — the load-aware variant: the queue and KV-utilization
  scorers replaced by llm-d's load-aware scorer (0.5 at an empty waiting
  queue, down to 0 at 128 waiting), weight 2, with the prefix-cache scorer
  at 3. The weights of this variant are our choice (the source fixes the
  scorer, not a default weight for this combination).

Queue and KV usage are what the engines' heartbeats last said (stale by the
heartbeat period, as llm-d's 50 ms Prometheus poll is); prefix locality is
the router's own index of what it routed where.
"""

from __future__ import annotations

from phaser.policies import scoring
from phaser.policies.base import register


@register("llm-d")
def make(n_instances: int, seed: int = 0, prefix_weight: float = 3.0, queue_weight: float = 2.0,
         kv_weight: float = 2.0, **_):
    return scoring.ScoringPolicy("llm-d", [(float(prefix_weight), scoring.prefix_cache), (float(queue_weight), scoring.queue),
                                           (float(kv_weight), scoring.kv_utilization)], scoring.MaxScorePicker(seed))


@register("llm-d-load-aware")
def make_load_aware(n_instances: int, seed: int = 0, prefix_weight: float = 3.0, load_weight: float = 2.0,
                    queue_threshold: int = 128, **_):
    return scoring.ScoringPolicy("llm-d-load-aware", [(float(prefix_weight), scoring.prefix_cache),
                                                      (float(load_weight), scoring.load_aware(int(queue_threshold)))],
                                 scoring.MaxScorePicker(seed))
