"""dynamo-kv: NVIDIA Dynamo's KV router cost (field-notes.md).

For each instance: ``cost = overlap_weight × (prefill blocks not cached
there) + decode blocks active there``, blocks of 16 tokens (the engine's KV
block); the cheapest instance wins
(temperature 0, Dynamo's default), or with ``temperature`` > 0 one is drawn
with probability ∝ exp(−cost_norm ÷ temperature), the costs normalised by
their maximum (Dynamo's softmax sampling).

* Cached tokens: the leading run of the request's prefix ids the router sent
  there (512 tokens each, the traces' convention), capped at the prompt
  (Dynamo learns them from KV events; our view learns them from its own
  routing, the same approximation llm-d's default uses).
* Active decode blocks: the KV tokens of the requests the router has
  outstanding there (prompt + tokens decoded so far, estimated by the view,
  corrected by heartbeats) ÷ 16.
* ``overlap_weight`` default 1.0 (Dynamo's ``overlap_score_weight``).
"""

from __future__ import annotations

import numpy as np

from phaser.engine.kv_cache import PREFIX_BLOCK_TOKENS
from phaser.policies.base import register
from phaser.policies.scoring import MaxScorePicker

KV_BLOCK = 16


class DynamoKV:
    name = "dynamo-kv"
    version = 0

    def __init__(self, n_instances: int, seed: int = 0, overlap_weight: float = 1.0, temperature: float = 0.0):
        self.w, self.t = float(overlap_weight), float(temperature)
        self.rng = np.random.default_rng(seed)
        self._max = MaxScorePicker(seed)

    def costs(self, job, view) -> list[float]:
        prompt = int(job.prompt_tokens)
        out = []
        for i in view.instances:
            cached = min(prompt, i.prefix_hits(job.prefix_ids) * PREFIX_BLOCK_TOKENS) if job.prefix_ids else 0
            out.append(self.w * (prompt - cached) / KV_BLOCK + i.kv_used_tokens_est / KV_BLOCK)
        return out

    def decide(self, job, view) -> int:
        c = np.asarray(self.costs(job, view), float)
        if self.t <= 0:
            return self._max.pick(list(-c))
        z = -(c / max(c.max(), 1e-9)) / self.t
        p = np.exp(z - z.max())
        pick = int(self.rng.choice(len(p), p=p / p.sum()))
        self._max.last_ties = [pick]  # a draw has no tie set: the drawn instance alone
        return pick

    @property
    def ties(self) -> list[int]:
        """The instances the last decision found equally good (its pick is one of them)."""
        return list(self._max.last_ties)


@register("dynamo-kv")
def make(n_instances: int, seed: int = 0, overlap_weight: float = 1.0, temperature: float = 0.0, **_):
    return DynamoKV(n_instances, seed, overlap_weight, temperature)
