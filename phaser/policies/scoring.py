"""Scorers and pickers, composed by a profile: the shape of the Gateway API
inference extension's scheduler (llm-d's endpoint picker), in which the
production routers' policies (``llm_d``, ``dynamo_kv``, …) are written.

* A **scorer** gives every instance a score in [0, 1] (higher is better) from
  what the router's ``ClusterView`` knows: its own bookkeeping (outstanding
  requests, the prefix blocks it routed where) and the engines' heartbeats
  (waiting queue, KV usage), with their staleness — exactly the signals a
  real router reads, never the simulator's ground truth.
* A **picker** turns the weighted sum of scores into one instance: the
  maximum (ties broken by a seeded RNG, as llm-d's max-score picker shuffles),
  or a softmax draw with a temperature.
* ``ScoringPolicy(scorers=[(weight, scorer), …], picker)`` is a policy.

Scorer definitions (as llm-d's plugins define them):

* ``prefix_cache`` — matched prefix blocks ÷ the request's prefix blocks
  (the router's approximate index of what it sent where, like llm-d's
  default approximate prefix-cache scorer, which only observes traffic);
* ``queue`` — min-max normalised waiting queue from the heartbeats:
  (max − q) ÷ (max − min), 1 for all when every queue is equal;
* ``kv_utilization`` — 1 − KV usage from the heartbeats;
* ``load_aware`` — 0.5 for an empty waiting queue, falling linearly to 0 at
  ``threshold`` (default 128) waiting requests.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

Scorer = Callable[[object, object], list[float]]  # (job, view) -> score per instance


def prefix_cache(job, view) -> list[float]:
    if not job.prefix_ids:
        return [0.0] * len(view.instances)
    n = len(job.prefix_ids)
    return [i.prefix_hits(job.prefix_ids) / n for i in view.instances]


def queue(job, view) -> list[float]:
    q = [i.queue_len for i in view.instances]
    lo, hi = min(q), max(q)
    if hi == lo:
        return [1.0] * len(q)
    return [(hi - x) / (hi - lo) for x in q]


def kv_usage(inst) -> float:
    """KV usage fraction as the last heartbeat reported it."""
    cap = max(1, inst.kv_capacity_tokens)
    return min(1.0, max(0.0, inst.hb_kv_used_tokens / cap))


def kv_utilization(job, view) -> list[float]:
    return [1.0 - kv_usage(i) for i in view.instances]


def load_aware(threshold: int = 128) -> Scorer:
    def score(job, view) -> list[float]:
        return [0.5 * (1.0 - min(i.queue_len, threshold) / threshold) for i in view.instances]

    return score


class MaxScorePicker:
    """The instance with the highest score; ties broken uniformly at random (seeded)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        #: the instances that shared the best score at the last pick
        self.last_ties: list[int] = []

    def pick(self, scores: Sequence[float]) -> int:
        best = max(scores)
        ties = [k for k, s in enumerate(scores) if s >= best - 1e-12]
        self.last_ties = ties
        return ties[0] if len(ties) == 1 else int(ties[int(self.rng.integers(len(ties)))])


class SoftmaxPicker:
    """Draw ∝ exp(score ÷ temperature); temperature 0 is the max-score picker."""

    def __init__(self, temperature: float, seed: int = 0):
        self.t = float(temperature)
        self.rng = np.random.default_rng(seed)
        self._max = MaxScorePicker(seed)

    def pick(self, scores: Sequence[float]) -> int:
        if self.t <= 0:
            return self._max.pick(scores)
        s = np.asarray(scores, float) / self.t
        p = np.exp(s - s.max())
        return int(self.rng.choice(len(p), p=p / p.sum()))


class ScoringPolicy:
    """A policy made of weighted scorers and a picker (see the module docstring)."""

    version = 0

    def __init__(self, name: str, scorers: list[tuple[float, Scorer]], picker):
        if not scorers:
            raise ValueError("a scoring profile needs at least one scorer")
        self.name = name
        self.scorers = scorers
        self.picker = picker
        self.last_scores: list[float] = []

    def decide(self, job, view) -> int:
        total = [0.0] * len(view.instances)
        for w, sc in self.scorers:
            for k, v in enumerate(sc(job, view)):
                total[k] += w * (0.0 if math.isnan(v) else v)
        self.last_scores = total
        return self.picker.pick(total)

    @property
    def ties(self) -> list[int]:
        """The instances the last decision found equally good (its pick is one of them)."""
        return list(getattr(self.picker, "last_ties", []))
