"""The RL state: a documented, versioned feature spec and its encoder.

Layout (the paper's 27 numbers for 4 instances; 3 + 6·N in general), in order:

=====  ======================  =========================================  ==========
index  name                    raw value                                  scaling
=====  ======================  =========================================  ==========
0      ``queue_len``           requests in the router queue (incl. this)  lin, cap 512
1      ``prompt_tokens``       the next request's prompt tokens           log, cap 32768
2      ``pred_bucket``         its predicted decode bucket (0, 1, 2)      lin, cap 2
3+6i   ``i{i}.prefill``        requests estimated in prefill on i         log, cap 256
4+6i   ``i{i}.decode_b0``      decoding requests predicted < 256 tokens   log, cap 256
5+6i   ``i{i}.decode_b1``      … predicted 256–2048 tokens                log, cap 256
6+6i   ``i{i}.decode_b2``      … predicted ≥ 2048 tokens                  log, cap 256
7+6i   ``i{i}.free_kv``        estimated free KV tokens / KV capacity     lin, cap 1
8+6i   ``i{i}.next_done_s``    seconds until its earliest completion      log, cap 60
=====  ======================  =========================================  ==========

Scaling: ``lin`` → min(x, cap) / cap; ``log`` → log1p(min(x, cap)) / log1p(cap);
every feature lands in [0, 1]. Sources of the caps: 512 = the paper's queue cap
(4 × max batch); prompts up to 32k tokens cover every workload we ship (paper
mix ≤ 1,000, Azure traces ≤ ~30k) while log keeps short prompts distinguishable;
256 = vLLM's default ``max_num_seqs`` (no instance runs more); free KV is
already a fraction; 60 s bounds "when will a slot free up" (longer waits all
mean "busy"). Counts and times are log-scaled because the difference between 0
and 4 requests matters far more to a routing decision than 100 vs 104. An idle
instance (no completion pending, ``earliest_completion_s = inf``) encodes 0 —
nothing to wait for — and is distinguished from "about to finish" by its zero
counts.

All raw values come from ``phaser.cluster.view.ClusterView`` (the router's own
estimates), never from the simulator's ground truth, so a policy sees the same
thing in training and in the live router. The spec (names, order, scaling,
version) is stored in every checkpoint and compared on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FEATURE_VERSION = 1

GLOBAL = (("queue_len", "lin", 512.0), ("prompt_tokens", "log", 32768.0), ("pred_bucket", "lin", 2.0))
PER_INSTANCE = (
    ("prefill", "log", 256.0),
    ("decode_b0", "log", 256.0),
    ("decode_b1", "log", 256.0),
    ("decode_b2", "log", 256.0),
    ("free_kv", "lin", 1.0),
    ("next_done_s", "log", 60.0),
)


@dataclass(frozen=True)
class FeatureSpec:
    n_instances: int
    version: int = FEATURE_VERSION

    @property
    def size(self) -> int:
        return len(GLOBAL) + len(PER_INSTANCE) * self.n_instances

    def rows(self) -> list[tuple[str, str, float]]:
        out = list(GLOBAL)
        for i in range(self.n_instances):
            out += [(f"i{i}.{n}", kind, cap) for n, kind, cap in PER_INSTANCE]
        return out

    def names(self) -> list[str]:
        return [n for n, _, _ in self.rows()]

    def to_dict(self) -> dict:
        """What a checkpoint stores: enough to re-check compatibility by equality."""
        return {
            "version": self.version,
            "n_instances": self.n_instances,
            "features": [{"name": n, "scale": k, "cap": c} for n, k, c in self.rows()],
        }

    def per_instance_dict(self) -> dict:
        """The instance-count-free part (what a shared per-instance network depends on)."""
        return {"version": self.version,
                "global": [list(r) for r in GLOBAL], "per_instance": [list(r) for r in PER_INSTANCE]}


class Encoder:
    """Turns ``(job, view)`` into the feature vector of a ``FeatureSpec``.

    Raw values are gathered in one Python pass over the instances and scaled by
    one vectorised numpy expression (precomputed caps and a log mask), which
    keeps a 16-instance encode around ten microseconds.
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        rows = spec.rows()
        self._cap = np.array([c for _, _, c in rows], np.float64)
        self._log = np.array([k == "log" for _, k, _ in rows])
        self._den = np.where(self._log, np.log1p(self._cap), self._cap)

    def raw(self, job, view) -> list[float]:
        now = view.now
        out = [float(view.router_queue_len), float(job.prompt_tokens), float(job.predicted_bucket)]
        for inst in view.instances:
            b = inst.decode_buckets
            nd = inst.earliest_completion_s
            out += (inst.in_prefill, b[0], b[1], b[2],
                    inst.free_kv_tokens / inst.kv_capacity_tokens,
                    0.0 if math.isinf(nd) else max(0.0, nd - now))
        return out

    def scale(self, raw) -> np.ndarray:
        x = np.minimum(np.maximum(np.asarray(raw, np.float64), 0.0), self._cap)
        x = np.where(self._log, np.log1p(x), x) / self._den
        return x.astype(np.float32)

    def __call__(self, job, view) -> np.ndarray:
        if len(view.instances) != self.spec.n_instances:
            raise ValueError(f"view has {len(view.instances)} instances, feature spec {self.spec.n_instances}")
        return self.scale(self.raw(job, view))
