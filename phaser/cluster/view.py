"""``ClusterView``: what the router knows about each instance at decision time.

Fed identically by the router service and by the simulator:

* ``on_assign(job, i, t)``   -- the router's own decision (never stale);
* ``on_complete(rid, i, t)`` -- a ``Completion`` arrived;
* ``on_status(status, t)``   -- an ``InstanceStatus`` heartbeat arrived at ``t``
  (it describes the instance at ``status.ts_s <= t``; the difference is the
  staleness, reported as ``heartbeat_age``);
* ``advance_to(t)``          -- the caller moves the view's clock before asking a
  policy (``view.now``).

Decisions
---------
The router knows, per outstanding request, the prompt length and the
predictor's expected output length -- never the true one. From those and the
instance's latency profile the view *estimates* the phase of every request:

* **Prefill** is modelled as a FIFO pipeline per instance: a request assigned
  at ``t`` finishes prefill at ``max(t, prefill_free_at) + profile.prefill_time(p)``
  (vLLM admits FCFS and runs a newcomer's prefill in the next iteration). A heap
  of these times moves requests into decode as the clock passes them.
* **Decode** uses a per-instance *decode clock* ``D`` (the number of decode
  iterations executed so far), the same virtual-time trick as weighted fair
  queueing: every decoding request gains one token per iteration, so a request
  that entered decode at ``D0`` with prediction ``d`` is expected to finish when
  ``D == D0 + d``. ``D`` advances at ``1 / profile.decode_step_time(batch, kv)``
  iterations per second, recomputed at every event (assignment, completion,
  prefill done). Remaining decode tokens are then ``sum(F) - n * D`` -- O(1) from
  running sums -- and the earliest completion is the top of a heap of ``F``.
* A request that outlives its prediction (``D`` passed its ``F`` without a
  completion) gets a new finish ``F = D + max(16, produced)``: for the
  heavy-tailed output lengths of LLM traffic, the expected remaining length of a
  request that has already produced ``x`` tokens is about ``x`` (Pareto with
  shape 2); 16 tokens (one KV block) is the floor. This keeps
  ``decode_tokens_left`` and ``earliest_completion_s`` meaningful when the
  predictor is wrong, with amortised O(log n) cost (the extension doubles).
* **Free KV** is estimated as capacity minus (prompt tokens of every outstanding
  request + decode tokens produced so far), and corrected by heartbeats: each
  heartbeat sets an offset = (reported used - estimated used), applied until the
  next heartbeat, result clipped to ``[0, capacity]``.
* **Prefix ids** routed to an instance are kept in an LRU of at most
  ``prefix_capacity`` ids (default: the instance's KV blocks, the most a prefix
  cache could hold), so ``prefix_hits`` approximates what the engine's cache
  still holds.

Approximations (documented, deliberate): the prefill pipeline ignores that a
full batch (``max_num_seqs``) or a full KV cache delays admission, and the
decode clock ignores that prefills stretch decode iterations -- completions and
heartbeats correct both. All queries are O(1); events cost O(log n) amortised.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import numpy as np

from phaser.cluster.columns import ROW_FIELDS
from phaser.engine.kv_cache import leading_run
from phaser.types import N_BUCKETS

if TYPE_CHECKING:  # pragma: no cover
    from protos.messages import InstanceStatus

    from phaser.types import Job

#: Floor of the extension given to a request that outlived its prediction
#: (one 16-token KV block).
OVERDUE_MIN_TOKENS = 16.0


def overdue_remaining(produced: float) -> float:
    """Expected decode tokens left of a request that has outlived its prediction after
    ``produced`` tokens (see the module docstring; also ``phaser.sim.lookahead``)."""
    return max(OVERDUE_MIN_TOKENS, produced)


#: weight of the newest completion in ``InstanceView.latency_ewma_s``
LATENCY_EWMA = 0.2


@dataclass(slots=True)
class _Req:
    id: str
    prompt: int
    pred: float
    bucket: int
    decoding: bool = False
    prefill_done: float = 0.0
    d0: float = 0.0
    finish: float = 0.0  # decode-clock value at which it is expected to finish
    assigned: float = 0.0  # when the router sent it here


@dataclass(slots=True)
class InstanceView:
    """Per-instance state read by policies. Every attribute is O(1) to read."""

    index: int
    profile: object
    prefix_capacity: int
    # -- router bookkeeping (exact) --
    outstanding: int = 0
    assigned_total: int = 0
    completed_total: int = 0
    #: EWMA (weight LATENCY_EWMA) of assignment-to-completion time of the requests completed
    #: here, as the router observes it (nan before the first): what a latency-metric router reads
    latency_ewma_s: float = math.nan
    # -- estimates --
    in_prefill: int = 0
    decode_buckets: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    prompt_tokens_left: int = 0          # prompts not yet (estimated) prefilled
    # -- heartbeat (stale by heartbeat_age) --
    hb_ts_s: float = -math.inf
    hb_received_s: float = -math.inf
    queue_len: int = 0                   # instance waiting queue, from the last heartbeat
    hb_running_prefill: int = 0
    hb_running_decode: int = 0
    hb_kv_used_tokens: int = 0
    # -- internals --
    _t: float = 0.0
    _D: float = 0.0
    _rate_step_s: float = 0.0            # seconds per decode iteration at the current membership
    _n_dec: int = 0
    _sum_finish: float = 0.0
    _sum_d0: float = 0.0
    _prompt_dec: int = 0                 # prompt tokens of decoding requests
    _prompt_all: int = 0                 # prompt tokens of all outstanding requests
    _pred_prefill: float = 0.0           # predicted decode tokens of requests still in prefill
    _prefill_free_at: float = 0.0
    _kv_offset: float = 0.0
    _prefill_heap: list = field(default_factory=list)
    _finish_heap: list = field(default_factory=list)
    _reqs: dict = field(default_factory=dict)
    _prefix: OrderedDict = field(default_factory=OrderedDict)
    _kv_cap: int = -1  # the profile's KV capacity, cached (-1: not yet; reset when the profile changes)
    #: the view's set of instances whose ``arrays()`` column is stale (any change but the clock's)
    _stale: set | None = None

    # ---------------------------------------------------------------- queries
    @property
    def kv_capacity_tokens(self) -> int:
        if self._kv_cap < 0:
            self._kv_cap = int(self.profile.kv_capacity_tokens)
        return self._kv_cap

    @property
    def decoding(self) -> int:
        """Requests estimated to be in decode."""
        return self._n_dec

    @property
    def decode_tokens_left(self) -> float:
        """Predicted decode tokens still to produce, over every outstanding request."""
        return max(0.0, self._sum_finish - self._n_dec * self._D) + self._pred_prefill

    @property
    def tokens_left(self) -> float:
        """Prompt tokens still to prefill + predicted decode tokens left (the paper's JSQ load)."""
        return self.prompt_tokens_left + self.decode_tokens_left

    @property
    def decode_kv_tokens(self) -> float:
        """Estimated KV tokens held by decoding requests (prompt + produced)."""
        return self._prompt_dec + max(0.0, self._n_dec * self._D - self._sum_d0)

    @property
    def kv_used_tokens_est(self) -> float:
        return (self._prompt_all - self._prompt_dec) + self.decode_kv_tokens

    @property
    def free_kv_tokens(self) -> float:
        """Estimated free KV capacity in tokens, corrected by the last heartbeat."""
        cap = self.kv_capacity_tokens
        return min(float(cap), max(0.0, cap - self.kv_used_tokens_est - self._kv_offset))

    @property
    def earliest_completion_s(self) -> float:
        """Estimated stack-clock time of this instance's next completion (inf if idle)."""
        if self._n_dec:
            return self._t + max(0.0, self._finish_top() - self._D) * self._rate_step_s
        if self.in_prefill:
            done, tail = self._prefill_top()
            return max(done, self._t) + tail
        return math.inf

    def _finish_top(self) -> float:
        """Decode-clock finish of the first decoding request to end (there is one)."""
        fh, reqs = self._finish_heap, self._reqs
        while fh:  # drop lazily-deleted tops (completed or re-estimated requests)
            f, rid = fh[0]
            r = reqs.get(rid)
            if r is not None and r.decoding and r.finish == f:
                break
            heapq.heappop(fh)
        return fh[0][0]

    def _prefill_top(self) -> tuple[float, float]:
        """(prefill end, then its predicted decode time alone) of the first request in prefill."""
        ph, reqs = self._prefill_heap, self._reqs
        while ph:
            done, _, rid = ph[0]
            r = reqs.get(rid)
            if r is not None and not r.decoding and r.prefill_done == done:
                break
            heapq.heappop(ph)
        return done, max(1.0, r.pred) * self.profile.decode_step_time(1, r.prompt)

    def _row(self) -> tuple:
        """This instance's column of ``ClusterView.arrays()`` (the order of ``ROW_FIELDS``)."""
        prof = self.profile
        n, rate = self._n_dec, self._rate_step_s
        top = self._finish_top() if n else 0.0
        done, tail = self._prefill_top() if (not n and self.in_prefill) else (-math.inf, 0.0)
        fl, a, b, e = prof.floor_s, prof.a_s, prof.b_s, prof.e_s
        lin0, lin1 = max(fl, a + b * n), max(fl, a + b * (n + 1))
        return (self._t, self._D, n, rate, 1.0 / rate if n and rate > 0 else 0.0, self._prompt_dec, self._sum_d0,
                self._sum_finish, self._pred_prefill, self._prompt_all, self._kv_offset, self.kv_capacity_tokens,
                self._prefill_free_at, float(self.outstanding >= prof.max_num_seqs), top, done, tail,
                fl, a, b, prof.c_s, prof.d_s, e, prof.g_s, lin0, a + b * n, lin1 - lin0, e * n,
                self.in_prefill, *self.decode_buckets, self.outstanding)

    @property
    def step_time_s(self) -> float:
        """Estimated duration of one decode iteration at the current batch."""
        return self._rate_step_s

    def prefill_backlog_s(self, now: float) -> float:
        """Estimated seconds until the prefills already routed here are done."""
        return max(0.0, self._prefill_free_at - now)

    def heartbeat_age(self, now: float) -> float:
        """Age of the heartbeat information at ``now`` (inf if none yet)."""
        return now - self.hb_ts_s

    def prefix_hits(self, prefix_ids: Sequence[int]) -> int:
        """Length of the leading run of ``prefix_ids`` already routed here (and
        not yet evicted from the LRU): the cached prefix blocks a request would reuse."""
        return leading_run(prefix_ids, self._prefix)

    # ---------------------------------------------------------------- updates
    def _touch(self) -> None:
        if self._stale is not None:
            self._stale.add(self.index)

    def _recompute_rate(self) -> None:
        if self._n_dec:
            batch = min(self._n_dec, int(getattr(self.profile, "max_num_seqs", self._n_dec) or self._n_dec))
            self._rate_step_s = float(self.profile.decode_step_time(batch, self.decode_kv_tokens))
        else:
            self._rate_step_s = 0.0

    def _run_clock(self, t: float) -> None:
        if t > self._t:
            if self._n_dec and self._rate_step_s > 0:
                self._D += (t - self._t) / self._rate_step_s
            self._t = t

    def advance(self, t: float) -> None:
        """Move this instance's estimates to time ``t`` (no-op if ``t`` is not later)."""
        if t <= self._t:
            return
        ph = self._prefill_heap
        reqs = self._reqs
        while ph and ph[0][0] <= t:
            done, _, rid = heapq.heappop(ph)
            r = reqs.get(rid)
            if r is None or r.decoding or r.prefill_done != done:
                continue  # lazily deleted
            self._run_clock(done)
            self._to_decode(r)
            self._recompute_rate()
            self._touch()
        self._run_clock(t)
        self._fix_overdue()

    def _to_decode(self, r: _Req) -> None:
        r.decoding = True
        self.in_prefill -= 1
        self.prompt_tokens_left -= r.prompt
        self._pred_prefill -= r.pred
        r.d0 = self._D
        r.finish = self._D + max(1.0, r.pred)
        self._n_dec += 1
        self._sum_finish += r.finish
        self._sum_d0 += r.d0
        self._prompt_dec += r.prompt
        self.decode_buckets[r.bucket] += 1
        heapq.heappush(self._finish_heap, (r.finish, r.id))

    def _fix_overdue(self) -> None:
        fh = self._finish_heap
        reqs = self._reqs
        while fh and fh[0][0] <= self._D:
            f, rid = heapq.heappop(fh)
            r = reqs.get(rid)
            if r is None or not r.decoding or r.finish != f:
                continue
            produced = self._D - r.d0
            self._touch()
            r.finish = self._D + overdue_remaining(produced)
            self._sum_finish += r.finish - f
            heapq.heappush(fh, (r.finish, rid))

    def _assign(self, job: "Job", t: float, seq: int) -> None:
        self.advance(t)
        self._touch()
        r = _Req(job.id, int(job.prompt_tokens), float(job.predicted_tokens), int(job.predicted_bucket), assigned=t)
        start = max(t, self._prefill_free_at)
        r.prefill_done = start + float(self.profile.prefill_time(r.prompt))
        self._prefill_free_at = r.prefill_done
        self._reqs[r.id] = r
        self.outstanding += 1
        self.assigned_total += 1
        self.in_prefill += 1
        self.prompt_tokens_left += r.prompt
        self._prompt_all += r.prompt
        self._pred_prefill += r.pred
        heapq.heappush(self._prefill_heap, (r.prefill_done, seq, r.id))
        cache = self._prefix
        for pid in job.prefix_ids:
            if pid in cache:
                cache.move_to_end(pid)
            else:
                cache[pid] = None
        while len(cache) > self.prefix_capacity:
            cache.popitem(last=False)

    def _complete(self, rid: str, t: float) -> bool:
        self.advance(t)
        r = self._reqs.pop(rid, None)
        if r is None:
            return False
        self._touch()
        self.outstanding -= 1
        self.completed_total += 1
        lat = max(0.0, t - r.assigned)
        self.latency_ewma_s = lat if self.latency_ewma_s != self.latency_ewma_s else (
            (1 - LATENCY_EWMA) * self.latency_ewma_s + LATENCY_EWMA * lat)
        self._prompt_all -= r.prompt
        if r.decoding:
            self._n_dec -= 1
            self._sum_finish -= r.finish
            self._sum_d0 -= r.d0
            self._prompt_dec -= r.prompt
            self.decode_buckets[r.bucket] -= 1
            self._recompute_rate()
        else:
            self.in_prefill -= 1
            self.prompt_tokens_left -= r.prompt
            self._pred_prefill -= r.pred
        if not self._reqs:  # idle: reset accumulated float sums exactly
            self._sum_finish = self._sum_d0 = self._pred_prefill = 0.0
            self._prefill_free_at = min(self._prefill_free_at, t)
        return True

    def _status(self, s: "InstanceStatus", t: float) -> None:
        self.advance(t)
        self._touch()
        self.hb_ts_s = float(s.ts_s)
        self.hb_received_s = t
        unknown = s.unknown  # fields a real engine does not report: keep our own estimate
        if "waiting" not in unknown:
            self.queue_len = int(s.waiting)
        if "running_prefill" not in unknown and "running" not in unknown:
            self.hb_running_prefill = int(s.running_prefill)
            self.hb_running_decode = int(s.running_decode)
        if "kv_blocks_used" not in unknown:
            self.hb_kv_used_tokens = int(s.kv_blocks_used) * int(getattr(self.profile, "block_tokens", 16))
            self._kv_offset = self.hb_kv_used_tokens - self.kv_used_tokens_est


class ClusterView:
    """What the router knows about every instance; see the module docstring."""

    def __init__(self, profiles: Sequence[object], prefix_capacity: int | None = None):
        self.instances: list[InstanceView] = []
        for i, p in enumerate(profiles):
            cap = prefix_capacity if prefix_capacity is not None else int(
                getattr(p, "kv_blocks_total", 0) or p.kv_capacity_tokens // getattr(p, "block_tokens", 16))
            self.instances.append(InstanceView(index=i, profile=p, prefix_capacity=max(1, cap)))
        self.now: float = 0.0
        self.router_queue_len: int = 0
        self._seq = 0
        self._where: dict[str, int] = {}
        self._rows = None  # ``arrays()``: one column per instance, one row per ROW_FIELDS
        self._stale = set(range(len(self.instances)))  # columns to rebuild at the next ``arrays()``
        for inst in self.instances:
            inst._stale = self._stale

    def __len__(self) -> int:
        return len(self.instances)

    def set_profiles(self, profiles: Sequence[object]) -> None:
        """Plan with other profiles from now on (the twin fitted the real hardware); what is
        already routed keeps its estimates until its next event."""
        if len(profiles) != len(self.instances):
            raise ValueError(f"{len(profiles)} profiles for {len(self.instances)} instances")
        for inst, p in zip(self.instances, profiles):
            inst.profile = p
            inst._kv_cap = -1
            inst._touch()

    def arrays(self) -> "ViewArrays":
        """Every instance's state as arrays, for vectorised policies (``phaser.policies.mixing``):
        rows are rebuilt only for instances that changed since the last call (the clock's
        movement is extrapolated by ``ViewArrays.at``, not rebuilt)."""
        if self._rows is None:
            self._rows = np.empty((len(ROW_FIELDS), len(self.instances)))
            self._arrays = ViewArrays(self._rows)
        m, stale = self._rows, self._stale
        if stale:
            insts = self.instances
            for k in stale:
                m[:, k] = insts[k]._row()
            stale.clear()
        return self._arrays

    def advance_to(self, t: float) -> None:
        """Set the view's clock (monotone) and bring every instance's estimates to it."""
        if t < self.now:
            return
        self.now = t
        for inst in self.instances:
            inst.advance(t)

    def on_assign(self, job: "Job", instance: int, t: float) -> None:
        self._seq += 1
        self._where[job.id] = instance
        self.instances[instance]._assign(job, t, self._seq)
        if t > self.now:
            self.now = t

    def on_complete(self, request_id: str, instance: int, t: float) -> bool:
        """Forget a finished request. Returns False for ids the view never saw
        (e.g. assigned before a router restart); those are ignored."""
        self._where.pop(request_id, None)
        return self.instances[instance]._complete(request_id, t)

    def on_status(self, status: "InstanceStatus", t: float) -> None:
        if 0 <= status.instance < len(self.instances):
            self.instances[status.instance]._status(status, t)

    def instance_of(self, request_id: str) -> int | None:
        return self._where.get(request_id)

    @property
    def outstanding(self) -> int:
        return len(self._where)


class ViewArrays:
    """``ClusterView.arrays()``: one array per ``ROW_FIELDS`` name (``.n``, ``.floor`` ...),
    one element per instance (views of one matrix ``m`` the ``ClusterView`` keeps current;
    the layout is ``phaser.cluster.columns``, whose ``states_at`` gives the time-dependent estimates)."""

    def __init__(self, m):
        self.m = m
        for k, name in enumerate(ROW_FIELDS):
            setattr(self, name, m[k])
