"""The RL state: a documented, versioned feature spec and its encoder.

Two versions exist; a checkpoint stores the one it was trained with and is
served with exactly that one (``FeatureSpec.from_stored``), so version-1
checkpoints keep loading and serving bit-for-bit as before. New training and
the live router's feature publication use ``FEATURE_VERSION`` (2).

Version 1 layout (the paper's 27 numbers for 4 instances; 3 + 6·N in general), in order:

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

Version 2 (3 + 8·N) appends two numbers to every instance's block (block
stride 8, so ``i{i}.prefill`` is at 3+8i, ``i{i}.decode_kv`` at 10+8i):

=====  ======================  =========================================  ==========
index  name                    raw value                                  scaling
=====  ======================  =========================================  ==========
9+8i   ``i{i}.prefill_s``      seconds until the prefills routed to i     log, cap 60
                               are done (``InstanceView.prefill_backlog_s``)
10+8i  ``i{i}.decode_kv``      KV tokens held by decoding requests /      lin, cap 1
                               KV capacity (``decode_kv_tokens``)
=====  ======================  =========================================  ==========

Why: the workload-aware heuristic's prefill impact is driven by the prefill
backlog, which v1 only sees as a request *count*; on the prompt-heavy Azure
code trace an imitation with v1 agrees with the heuristic on ~52 % of decisions,
with these two inputs on 56 % (``phaser/checkpoints/README.md``). Caps: 60 s is
the same "longer all means busy" bound as ``next_done_s`` (a backlog of a
minute is already 20 × the paper's mean E2E); the decode KV share is a
fraction of capacity, so its cap is 1. ``free_kv`` says how full an instance
is, ``decode_kv`` how much of that is decode (long-lived) rather than prompts
still waiting — the two differ exactly when prefills queue up.

Version 3 (3 + 12·N) appends four more per instance (stride 12), what the
leaderboard's families showed the router needs to see to serve all of them
(``phaser.rl.families``): a learned router that cannot see cache hits loses
to the cache-aware rules on prefix-heavy traffic, one that cannot see an
instance's speed loses to workload-aware on mixed hardware:

======  ======================  =========================================  ==========
index   name                    raw value                                  scaling
======  ======================  =========================================  ==========
11+12i  ``i{i}.cached_frac``    share of this prompt in i's prefix cache   lin, cap 1
                                (``InstanceView.prefix_hits`` × 512 tokens)
12+12i  ``i{i}.this_prefill_s`` seconds i's profile needs to prefill this  log, cap 60
                                prompt's uncached part alone
13+12i  ``i{i}.step_s``         estimated decode iteration time on i now   log, cap 1
                                (idle: one request's step)
14+12i  ``i{i}.outstanding``    requests the router has outstanding on i   log, cap 512
======  ======================  =========================================  ==========

Caps: a share is a fraction; 60 s as for the other times; a decode
iteration beyond 1 s is already 20 × a busy A100's; 512 = the queue cap.

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

from dataclasses import dataclass

import numpy as np

from phaser.cluster.columns import (B0, B2, CAP, IN_PREFILL, N, OUTSTANDING, RATE, STATE_FIELDS, empty_states,
                                    states_at)
from phaser.engine.kv_cache import PREFIX_BLOCK_TOKENS

#: rows of ``phaser.cluster.columns.states_at``'s result
DECODE_KV, FREE_KV, PREFILL_BACKLOG, TO_COMPLETION = (STATE_FIELDS.index(f) for f in (
    "decode_kv_tokens", "free_kv_tokens", "prefill_backlog_s", "to_completion_s"))

#: The version new training and the router's feature publication use.
FEATURE_VERSION = 2
VERSIONS = (1, 2, 3)

GLOBAL = (("queue_len", "lin", 512.0), ("prompt_tokens", "log", 32768.0), ("pred_bucket", "lin", 2.0))
N_GLOBAL = len(GLOBAL)
PER_INSTANCE = (
    ("prefill", "log", 256.0),
    ("decode_b0", "log", 256.0),
    ("decode_b1", "log", 256.0),
    ("decode_b2", "log", 256.0),
    ("free_kv", "lin", 1.0),
    ("next_done_s", "log", 60.0),
)
PER_INSTANCE_V2 = PER_INSTANCE + (("prefill_s", "log", 60.0), ("decode_kv", "lin", 1.0))
PER_INSTANCE_V3 = PER_INSTANCE_V2 + (("cached_frac", "lin", 1.0), ("this_prefill_s", "log", 60.0),
                                     ("step_s", "log", 1.0), ("outstanding", "log", 512.0))


def per_instance_rows(version: int) -> tuple[tuple[str, str, float], ...]:
    if version == 1:
        return PER_INSTANCE
    if version == 2:
        return PER_INSTANCE_V2
    if version == 3:
        return PER_INSTANCE_V3
    raise ValueError(f"unknown feature spec version {version} (known: {VERSIONS})")


@dataclass(frozen=True)
class FeatureSpec:
    n_instances: int
    version: int = FEATURE_VERSION

    def __post_init__(self):
        per_instance_rows(self.version)  # refuse unknown versions early

    @classmethod
    def from_stored(cls, stored: dict, n_instances: int) -> "FeatureSpec":
        """The spec a checkpoint's ``feature_spec`` entry was trained with, for
        ``n_instances``; a checkpoint written before versions were compared has
        version 1 (the only one that existed)."""
        version = int(stored.get("version", 1))
        if version not in VERSIONS:
            raise ValueError(f"feature spec version {version} is unknown to this phaser (known: {VERSIONS})")
        return cls(n_instances, version)

    @property
    def per_instance(self) -> tuple[tuple[str, str, float], ...]:
        return per_instance_rows(self.version)

    @property
    def size(self) -> int:
        return len(GLOBAL) + len(self.per_instance) * self.n_instances

    def rows(self) -> list[tuple[str, str, float]]:
        out = list(GLOBAL)
        for i in range(self.n_instances):
            out += [(f"i{i}.{n}", kind, cap) for n, kind, cap in self.per_instance]
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
                "global": [list(r) for r in GLOBAL], "per_instance": [list(r) for r in self.per_instance]}


class Encoder:
    """Turns ``(job, view)`` into the feature vector of a ``FeatureSpec``.

    The raw values are read off ``ClusterView.arrays()`` (the router's per-instance columns,
    ``phaser.cluster.columns``) in a few numpy operations per feature, not a Python pass over
    the instances: at 64 instances that pass was ~0.6 ms of a learned decision's ~0.8 ms.
    Only what is per profile or per prompt (a v3 prompt's cached share, its prefill time and
    an idle instance's one-request step) is asked of the profile objects, once per distinct
    value. Then one vectorised expression scales (precomputed caps and a log mask).
    """

    def __init__(self, spec: FeatureSpec):
        self.spec = spec
        rows = spec.rows()
        self._cap = np.array([c for _, _, c in rows], np.float64)
        self._log = np.array([k == "log" for _, k, _ in rows])
        self._den = np.where(self._log, np.log1p(self._cap), self._cap)
        self._v2 = spec.version >= 2
        self._v3 = spec.version >= 3
        self._width = len(spec.per_instance)

    def raw(self, job, view) -> np.ndarray:
        """The unscaled features (float64, the spec's order)."""
        now = float(view.now)
        prompt = int(job.prompt_tokens)
        n = len(view.instances)
        m = view.arrays().m
        st = states_at(m, now, empty_states(n))
        cap = m[CAP]
        out = np.empty(N_GLOBAL + n * self._width)
        out[:N_GLOBAL] = (float(view.router_queue_len), float(prompt), float(job.predicted_bucket))
        blk = out[N_GLOBAL:].reshape(n, self._width)
        blk[:, 0] = m[IN_PREFILL]
        blk[:, 1:4] = m[B0:B2 + 1].T
        blk[:, 4] = st[FREE_KV] / cap
        blk[:, 5] = st[TO_COMPLETION]  # idle: 0, nothing to wait for
        if self._v2:
            blk[:, 6] = st[PREFILL_BACKLOG]
            blk[:, 7] = st[DECODE_KV] / cap
        if self._v3:
            self._v3_block(job, view, prompt, m, blk)
        return out

    @staticmethod
    def _v3_block(job, view, prompt: int, m: np.ndarray, blk: np.ndarray) -> None:
        prefix = job.prefix_ids
        prefill_s: dict = {}  # (profile, uncached tokens) -> seconds
        step1: dict = {}      # profile -> one request's decode step at this prompt
        for k, inst in enumerate(view.instances):
            cached = min(prompt, inst.prefix_hits(prefix) * PREFIX_BLOCK_TOKENS) if prefix else 0
            prof = inst.profile
            key = (id(prof), prompt - cached)
            t = prefill_s.get(key)
            if t is None:
                t = prefill_s[key] = float(prof.prefill_time(prompt - cached)) if prompt > cached else 0.0
            blk[k, 8] = cached / prompt if prompt else 0.0
            blk[k, 9] = t
            if m[N, k] <= 0:
                s1 = step1.get(id(prof))
                if s1 is None:
                    s1 = step1[id(prof)] = float(prof.decode_step_time(1, prompt))
                blk[k, 10] = s1
        decoding = m[N] > 0
        blk[decoding, 10] = m[RATE, decoding]
        blk[:, 11] = m[OUTSTANDING]

    def scale(self, raw) -> np.ndarray:
        x = np.minimum(np.maximum(np.asarray(raw, np.float64), 0.0), self._cap)
        x = np.where(self._log, np.log1p(x), x) / self._den
        return x.astype(np.float32)

    def __call__(self, job, view) -> np.ndarray:
        if len(view.instances) != self.spec.n_instances:
            raise ValueError(f"view has {len(view.instances)} instances, feature spec {self.spec.n_instances}")
        return self.scale(self.raw(job, view))
