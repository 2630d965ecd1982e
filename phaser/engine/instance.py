"""One simulated GPU instance: vLLM-style iteration-level (continuous) batching.

Pure: no wall clock, no I/O. Time enters only through ``add(req, t)`` and
``advance(horizon)``; the simulator drives it with virtual time, the live worker
with a scaled wall clock.

Scheduling (one *iteration* = one forward pass, duration from the profile):

* A FCFS **waiting** queue and a **running** list kept in admission order.
* Every running request that is decoding takes part in every iteration and
  produces one token. Before the iteration it needs KV room for the token it
  feeds; when a block is needed and none is available (after evicting cached
  prefixes), the **most recently admitted** running request is preempted by
  *recompute* (vLLM's default for single sequences): it frees all its blocks
  and goes back to the HEAD of the waiting queue; when re-admitted it
  re-prefills prompt + the tokens generated so far, and that prefill produces
  its next token. Several victims keep their admission order at the head. No
  new request is admitted in an iteration that preempted (as vLLM V0).
* Unchunked (default): newly admitted requests are prefilled whole in the same
  iteration as the running decodes ("prefill and decode in the same
  iteration"). Admission is FCFS and stops at the first request that does not
  fit: seats (``max_num_seqs``), token budget (``max_num_batched_tokens``;
  every decode counts 1 token; the first prefill of an iteration is admitted
  whatever its size, so a long prompt is never starved behind decodes — vLLM
  would reject a prompt above the budget, we serve it),
  and KV blocks for the whole prefill with the 1 % watermark.
* ``scheduler="vllm-v0"`` (vLLM V0 without chunked prefill, the paper's
  setup): an iteration is all prefills or all decodes. Whenever the waiting
  head can be admitted, the iteration admits prefills only (FCFS, seats,
  token budget, KV) and every running decode waits through it; otherwise it
  is a decode-only iteration (with recompute preemption). A decode's gap
  that spans prefill-only iterations counts whole in its TBT.
  ``scheduler="vllm-v1"`` is the chunked mode below (vLLM V1 always chunks);
  ``"mixed"`` (default) is the unchunked mode above.
* Chunked prefill (Sarathi-Serve): decodes first, then the running partial
  prefills in admission order, then new admissions, each taking a chunk of at
  most the remaining token budget. All prompt blocks are allocated at
  admission (vLLM V0 does the same). Default budget with chunking: 512 tokens
  (vLLM V0's default when chunked prefill is on).
* Prefix cache: see ``kv_cache``. On admission the leading cached prefix ids
  (capped so that at least one token is computed) skip prefill work.

Records: arrival (the request's system arrival), admission (first), first
token, finish, TTFT and E2E from arrival, queue wait = first admission − time
added to this instance. Time between tokens: the intervals between a request's
consecutive tokens (``output_tokens − 1`` of them; an interval that spans a
preemption is the whole gap). Mean = (finish − first token)/(n − 1); max; p99 by
the nearest-rank rule, kept with a bounded min-heap of the top
``n − ceil(0.99·n) + 1`` intervals (≤ 42 for 4 k tokens) instead of every
timestamp.

Speed: between events, decode-only iterations with a fixed batch are advanced
in CLOSED FORM. With batch B and KV tokens K0 read in the first of them,
iteration j lasts ``α + β·j`` (α = max(floor, a + b·B) + d·K0, β = d·B), so k
iterations take ``k·α + β·k(k−1)/2``. A span stops at the first of: the next
completion (min tokens left in the batch), the last iteration that starts
before the horizon (quadratic solved in closed form), the last iteration that
is sure to find its KV blocks (only computed when the cache is nearly full).
Waiting requests that cannot be admitted at the span's start cannot become
admissible inside it (seats and token budget are constant, free KV only
shrinks), so they do not break spans. Applying a span costs O(batch) (each request's
counters and TBT heap are updated once per span, not per iteration); the
batch aggregates a span needs (min tokens left, KV sum) are kept across spans.
A span cut only by the horizon (a heartbeat, the simulator looking at another
time) stays *open*: the instance clock and iteration count move in O(1), the
per-request effects are applied once, when the span ends, a request arrives,
or someone reads per-request state; ``status`` reports an open span's state
without applying it. ``reference=True`` disables spans (one iteration at a
time); tests hold the fast path to it within 1e-9.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import dataclass, fields

from phaser.engine.kv_cache import PREFIX_BLOCK_TOKENS, KVCache
from phaser.engine.profiles import LatencyProfile
from phaser.errors import PhaserError

#: Token budget per iteration when chunked prefill is on and none is given
#: (vLLM V0's default for chunked prefill).
CHUNKED_PREFILL_DEFAULT_BUDGET = 512
#: Scheduling modes: ``mixed`` (whole prefills join the running decodes' iteration),
#: ``vllm-v0`` (prefill-first: an iteration is all prefills or all decodes), ``vllm-v1``
#: (chunked prefill: decodes first, then prefill chunks under the token budget).
SCHEDULERS = ("mixed", "vllm-v0", "vllm-v1")

_INF = math.inf


@dataclass(slots=True)
class RequestRecord:
    """What one finished request experienced on one instance (times in stack-clock s)."""

    id: str
    instance: int
    task: str | None
    arrival_s: float
    admitted_s: float
    first_token_s: float
    finish_s: float
    ttft_s: float
    e2e_s: float
    tbt_mean_s: float
    tbt_p99_s: float
    tbt_max_s: float
    queue_wait_s: float
    preemptions: int
    prompt_tokens: int
    output_tokens: int
    cached_prompt_tokens: int
    #: time spent in the router queue before assignment (set by the simulator/router)
    router_wait_s: float = 0.0
    #: ``ok``; a real engine's request may end ``rejected`` (the engine refused it) or
    #: ``error``, with the engine's reason (``phaser.backends.stream``)
    status: str = "ok"
    reason: str = ""

    def to_completion(self, **extra):
        """A ``protos.Completion`` for this record; ``extra`` sets/overrides fields
        (e.g. ``policy``, ``policy_version``, ``router_wait_s``)."""
        from protos.messages import Completion

        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["request_id"] = d.pop("id")
        d.update(extra)
        return Completion(**d)


class _Req:
    """Engine-side state of one request (internal)."""

    __slots__ = ("id", "task", "prompt", "output", "prefix", "arrival", "added", "admitted", "first_token",
                 "last_token", "gen", "target", "done_pf", "blocks", "preempt", "cached", "tbt_max", "tbt_top",
                 "tbt_m")

    def __init__(self, req, t: float):
        self.id = req.id
        self.task = req.task
        self.prompt = req.prompt_tokens
        self.output = req.output_tokens
        self.prefix = tuple(req.prefix_ids or ())
        self.arrival = req.arrival_s
        self.added = t
        self.admitted = -1.0
        self.first_token = -1.0
        self.last_token = -1.0
        self.gen = 0  # tokens produced so far
        self.target = 0  # prefill tokens of the current admission (prompt + gen at admission)
        self.done_pf = 0  # prefill tokens done in the current admission
        self.blocks = 0
        self.preempt = 0
        self.cached = -1
        self.tbt_max = 0.0
        self.tbt_top: list[float] = []
        n = self.output - 1
        self.tbt_m = n - math.ceil(0.99 * n) + 1 if n > 0 else 0


def _starts_before(alpha: float, beta: float, D: float) -> int:
    """Smallest j with S(j) = j·α + β·j(j−1)/2 >= D: iterations 0..j−1 of a
    span (iteration i lasting α + β·i) start less than D after its start."""
    if D <= 0.0:
        return 0
    if beta > 0.0:
        h = alpha - beta / 2.0
        j = math.ceil((-h + math.sqrt(h * h + 2.0 * beta * D)) / beta)
    else:
        j = math.ceil(D / alpha)
    if j < 0:
        j = 0
    while j > 0 and (j - 1) * alpha + beta * ((j - 1) * (j - 2) / 2) >= D:
        j -= 1
    while j * alpha + beta * (j * (j - 1) / 2) < D:
        j += 1
    return j


def _push_tbt(r: _Req, v: float) -> None:
    if v > r.tbt_max:
        r.tbt_max = v
    top = r.tbt_top
    if len(top) < r.tbt_m:
        heapq.heappush(top, v)
    elif top and v > top[0]:
        heapq.heapreplace(top, v)


class Instance:
    """A simulated GPU instance (see the module docstring)."""

    def __init__(self, index: int, profile: LatencyProfile, chunked_prefill: bool = False,
                 max_num_batched_tokens: int | None = None, max_num_seqs: int | None = None,
                 reference: bool = False, scheduler: str = "mixed"):
        if scheduler not in SCHEDULERS:
            raise PhaserError(f"unknown scheduler {scheduler!r}; known: {', '.join(SCHEDULERS)}")
        self.index = index
        self.profile = profile
        self.scheduler = scheduler
        self.chunked = bool(chunked_prefill) or profile.chunked_prefill or scheduler == "vllm-v1"
        # vLLM V0 without chunked prefill: an iteration is all prefills or all decodes
        self.prefill_first = scheduler == "vllm-v0" and not self.chunked
        self._stalled = False  # decoders waited through a prefill-only iteration (their next gap spans it)
        if max_num_batched_tokens is None:  # an engine that always chunks states its own budget
            max_num_batched_tokens = (profile.max_num_batched_tokens if profile.chunked_prefill or not self.chunked
                                      else CHUNKED_PREFILL_DEFAULT_BUDGET)
        self.budget = int(max_num_batched_tokens)
        self.max_seqs = int(max_num_seqs if max_num_seqs is not None else profile.max_num_seqs)
        if self.budget < 1 or self.max_seqs < 1:
            raise PhaserError("max_num_batched_tokens and max_num_seqs must be >= 1")
        self.reference = reference
        self.kv = KVCache(profile.kv_blocks_total, profile.block_tokens)
        #: ``phaser.buckets.Buckets`` that every inter-token gap is counted into (a live
        #: worker's ITL histogram); None (the simulator) costs one test per iteration
        self.itl = None
        self.bt = profile.block_tokens
        self.t = 0.0  # engine clock: when the next iteration may start
        self.waiting: deque[_Req] = deque()
        self.running: list[_Req] = []
        self.n_prefilling = 0  # running requests whose current prefill is unfinished
        self.completed = 0
        self.iterations = 0
        self.preemptions = 0
        self._ids: set[str] = set()
        self._net: float | None = None  # cached next_event_time(), None = stale
        # (min tokens left, Σ prompt+gen) over the running batch, kept across decode
        # spans so a span's length is O(1) to find; None = recompute
        self._agg: tuple[int, int] | None = None
        # an open decode span [t0, α, β, k_free, k_done]: k_done of its iterations are
        # done (self.t, self.iterations include them) but not yet applied per request
        self._open: list | None = None
        # profile constants, local for speed
        p = profile
        self._floor, self._a, self._b, self._c, self._d = p.floor_s, p.a_s, p.b_s, p.c_s, p.d_s
        self._e, self._g = p.e_s, p.g_s

    # ------------------------------------------------------------------ API
    def refusal(self, req) -> str | None:
        """Why this instance can never serve ``req`` (None if it can): longer than
        the model's context, or than the whole KV cache. Such a request is
        rejected with this reason rather than queued forever."""
        if req.output_tokens is None:
            return "no output_tokens: a simulated instance needs the oracle length"
        total = req.prompt_tokens + req.output_tokens
        if total > self.profile.max_model_len:
            return (f"prompt + output = {total} tokens exceeds the context of {self.profile.model} "
                    f"({self.profile.max_model_len} tokens)")
        need = -(-total // self.bt)
        if need + self.kv.watermark_blocks > self.kv.total:
            return f"needs {total} KV tokens; {self.profile.name} holds {self.profile.kv_capacity_tokens}"
        return None

    def add(self, req, t: float) -> None:
        """Enqueue ``req`` (a ``protos.Request``) at engine time ``t``. It joins the
        first iteration starting at or after ``t``. ``PhaserError`` if the
        instance can never serve it (``refusal``) or it is already here."""
        if req.id in self._ids:
            raise PhaserError(f"request {req.id!r} added twice to instance {self.index}")
        why = self.refusal(req)
        if why is not None:
            raise PhaserError(f"request {req.id!r} {why}")
        self._ids.add(req.id)
        r = _Req(req, t)
        w = self.waiting
        if w and w[-1].added > t:
            raise PhaserError(f"requests must be added in time order (got {t} after {w[-1].added})")
        w.append(r)
        self._net = None

    def set_output_lengths(self, length_of) -> None:
        """What-if support for simulator forks (``phaser.sim.lookahead``): replace the
        output length of every queued and running request by ``length_of(id, produced)``
        — at least one more token than produced, at most what fits the KV cache.
        Never used on a real run, whose lengths are the oracle's."""
        if self._open is not None:
            self._close()
        fit = (self.kv.total - self.kv.watermark_blocks) * self.bt
        for r in (*self.running, *self.waiting):
            n = min(int(length_of(r.id, r.gen)), fit - r.prompt)
            r.output = max(n, r.gen + 1)
        self._agg = None
        self._net = None

    def cached_prefix_len(self, prefix_ids) -> int:
        """Prompt tokens a request with these ``prefix_ids`` would find cached here now."""
        if self._open is not None:
            self._close()  # the span's block allocations may evict cached prefixes
        return self.kv.prefix_hits(prefix_ids) * PREFIX_BLOCK_TOKENS

    def idle(self) -> bool:
        return not self.running and not self.waiting

    def advance(self, horizon: float) -> list[RequestRecord]:
        """Run every iteration that *starts* before ``horizon``; return the requests
        that finished (a record's ``finish_s`` may lie up to one iteration after
        ``horizon``: deliver it at ``finish_s``)."""
        done: list[RequestRecord] = []
        while True:
            op = self._open
            if op is not None:
                if self.waiting:  # someone may join: materialise, then schedule normally
                    self._close()
                else:
                    if self.t >= horizon:
                        break
                    t0, alpha, beta, k_free, k_done = op
                    j = _starts_before(alpha, beta, horizon - t0) if horizon < _INF else k_free
                    if j < k_free:  # still cut by the horizon: O(1), per-request state stays lazy
                        self.iterations += j - k_done
                        op[4] = j
                        self.t = t0 + j * alpha + beta * (j * (j - 1) / 2)
                        break
                    self._open = None  # the span reaches its end (a completion): apply it whole
                    self._net = None
                    self.iterations += k_free - k_done
                    t_end = t0 + k_free * alpha + beta * (k_free * (k_free - 1) / 2)
                    self._apply_span(k_free, alpha, beta, t_end, done)
                    self.t = t_end
                    continue
            running = self.running
            if not running:
                w = self.waiting
                if not w:
                    break
                if self.t < w[0].added:
                    self.t = w[0].added
                    self._net = None
            if self.t >= horizon:
                break
            self._net = None
            if not self.reference and running and not self.n_prefilling and not self._stalled and not self._admissible():
                h = horizon
                w = self.waiting
                if w and w[0].added > self.t and w[0].added < h:
                    h = w[0].added  # added "in the future": the span must let it join in time
                k, k_free, alpha, beta = self._span_len(h)
                t0 = self.t
                if 1 <= k < k_free and h == horizon and not w:
                    # cut by the horizon, nobody waiting: open a lazy span (O(1) now and
                    # at later cuts; per-request state is brought up to date on _close)
                    self._open = [t0, alpha, beta, k_free, k]
                    self.iterations += k
                    self.t = t0 + k * alpha + beta * (k * (k - 1) / 2)
                    self._net = t0 + k_free * alpha + beta * (k_free * (k_free - 1) / 2)
                    break
                if k >= 2:
                    t_end = t0 + k * alpha + beta * (k * (k - 1) / 2)
                    self.iterations += k
                    self._apply_span(k, alpha, beta, t_end, done)
                    self.t = t_end
                    if k < k_free and h == horizon and not (w and w[0].added > self.t):
                        # cut by the horizon with nothing about to join: same batch, next event known
                        self._net = t0 + k_free * alpha + beta * (k_free * (k_free - 1) / 2)
                    continue
            self._step(done)
        return done

    def next_event_time(self) -> float:
        """Earliest time a completion can happen if nothing is added (``inf`` when
        idle). Exact inside a decode span; otherwise a lower bound (the end of the
        next iteration at the earliest) — ``advance`` to it always makes progress."""
        net = self._net
        if net is not None:
            return net
        if self._open is not None:
            self._close()
        running = self.running
        if not running:
            if not self.waiting:
                net = _INF
            else:
                net = max(self.t, self.waiting[0].added) + self._floor
        elif self.n_prefilling or self._stalled or self._admissible():
            net = self.t + self._floor
        else:
            k, _, alpha, beta = self._span_len(_INF)
            if k <= 1:
                net = self.t + self._floor
            else:
                net = self.t + k * alpha + beta * (k * (k - 1) / 2)
            w = self.waiting
            if w and w[0].added > self.t:
                net = min(net, w[0].added + self._floor)
        self._net = net
        return net

    def status(self, t: float):
        """A ``protos.InstanceStatus`` heartbeat at ``t`` (call ``advance(t)`` first)."""
        from protos.messages import InstanceStatus

        pf = self.n_prefilling
        inflight = 0
        kv_used = self.kv.used
        op = self._open
        if op is None:
            for r in self.running:
                inflight += r.done_pf if r.done_pf < r.target else r.prompt + r.gen - 1
        else:  # an open span: the state k_done iterations on, computed without applying it
            k = op[4]
            bt = self.bt
            for r in self.running:
                ctx = r.prompt + r.gen + k - 1
                inflight += ctx
                nb = -(-ctx // bt)
                if nb > r.blocks:
                    kv_used += nb - r.blocks
        # validated construction (pydantic-core validates these ints faster than model_construct builds)
        return InstanceStatus(
            instance=self.index, ts_s=t, profile=self.profile.name, running_prefill=pf,
            running_decode=len(self.running) - pf, waiting=len(self.waiting), kv_blocks_used=kv_used,
            kv_blocks_total=self.kv.total, tokens_in_flight=inflight, completed=self.completed)

    def in_flight(self) -> list[tuple[str, int]]:
        """(request id, tokens produced so far) of every request on this instance."""
        if self._open is not None:
            self._close()
        return [(r.id, r.gen) for r in self.running] + [(r.id, r.gen) for r in self.waiting]

    # ------------------------------------------------------------ internals
    def _admissible(self) -> bool:
        """Could the waiting head be admitted into the next iteration?"""
        w = self.waiting
        if not w:
            return False
        r = w[0]
        if r.added > self.t or len(self.running) >= self.max_seqs:
            return False
        target = r.prompt + r.gen
        if not self.kv.can_admit(-(-target // self.bt)):
            return False
        if self.chunked:
            return self.budget - len(self.running) > 0
        # unchunked: the first prefill of an iteration is never refused for its size
        return True

    def _span_len(self, horizon: float) -> tuple[int, int, float, float]:
        """How many identical decode-only iterations may run from now: ``k_free``
        = up to the next completion, KV permitting; ``k`` = those of them that
        start before ``horizon``. Returns ``(k, k_free, α, β)``."""
        running = self.running
        agg = self._agg
        if agg is None:
            k = 1 << 62
            K0 = 0
            for r in running:
                left = r.output - r.gen
                if left < k:
                    k = left
                K0 += r.prompt + r.gen
            self._agg = (k, K0)
        else:
            k, K0 = agg
        B = len(running)
        lin = self._a + self._b * B
        if lin < self._floor:
            lin = self._floor
        alpha = lin + self._d * K0 + self._e * B
        beta = self._d * B
        # KV: iteration j (0-based) needs blocks_for(prompt + gen + j) per request.
        avail = self.kv.available
        bt = self.bt
        if k >= 2 and avail < B * (k // bt + 2):

            def need(n: int) -> int:  # extra blocks to run n iterations
                s = 0
                for r in running:
                    s += -(-(r.prompt + r.gen + n - 1) // bt) - r.blocks
                return s

            if need(k) > avail:
                lo, hi = 0, k  # need(lo) <= avail < need(hi)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if need(mid) <= avail:
                        lo = mid
                    else:
                        hi = mid
                k = lo
        k_free = k
        if horizon < _INF:
            j = _starts_before(alpha, beta, horizon - self.t)
            if j < k:
                k = j
        return k, k_free, alpha, beta

    def _close(self) -> None:
        """Bring per-request state up to date with an open span's done iterations."""
        t0, alpha, beta, k_free, k_done = self._open
        self._open = None
        done: list[RequestRecord] = []
        self._apply_span(k_done, alpha, beta, self.t, done)
        assert not done  # k_done < k_free <= tokens left of every request

    def _apply_span(self, k: int, alpha: float, beta: float, t_end: float, done: list[RequestRecord]) -> None:
        """Per-request effects of ``k`` decode-only iterations of the current batch
        (iteration j lasts ``alpha + beta·j``), the last one ending at ``t_end``.
        The caller moves ``self.t`` and ``self.iterations``."""
        last_dt = alpha + beta * (k - 1)
        bt = self.bt
        finished = False
        new_blocks = 0
        itl = self.itl
        if itl is not None and self.running:
            n_run = len(self.running)
            for j in range(k):
                itl.add(alpha + beta * j, n_run)
        for r in self.running:
            gen = r.gen = r.gen + k
            r.last_token = t_end
            nb = -(-(r.prompt + gen - 1) // bt)
            if nb > r.blocks:
                new_blocks += nb - r.blocks
                r.blocks = nb
            if last_dt > r.tbt_max:
                r.tbt_max = last_dt
            m = r.tbt_m
            top = r.tbt_top
            if m and (len(top) < m or last_dt > top[0]):
                j = k - 1
                stop = k - m
                if stop < 0:
                    stop = 0
                while j >= stop:
                    v = alpha + beta * j
                    if len(top) < m:
                        heapq.heappush(top, v)
                    elif v > top[0]:
                        heapq.heapreplace(top, v)
                    else:
                        break
                    j -= 1
            if gen >= r.output:
                finished = True
        if new_blocks:
            self.kv.allocate(new_blocks)  # _span_len made sure they exist
        if finished:
            self._finish(t_end, done)
            self._agg = None
        elif self._agg is not None:
            left, K0 = self._agg
            self._agg = (left - k, K0 + k * len(self.running))

    def _preempt_last(self) -> _Req:
        v = self.running.pop()
        self.kv.release(v.blocks)
        v.blocks = 0
        if v.done_pf < v.target:
            self.n_prefilling -= 1
        v.done_pf = 0
        v.target = 0
        v.preempt += 1
        self.preemptions += 1
        self.waiting.appendleft(v)
        return v

    def _step(self, done: list[RequestRecord]) -> None:
        """One iteration, scheduled and executed."""
        self._agg = None
        t0 = self.t
        bt = self.bt
        kv = self.kv
        running = self.running
        # vllm-v0: with a prefill admissible, this iteration runs prefills only
        prefill_only = self.prefill_first and self._admissible()
        # 1. KV room for every decoding request's next token; preempt from the back.
        preempted = False
        i = 0
        while i < len(running) and not prefill_only:
            r = running[i]
            if r.done_pf >= r.target:
                need = -(-(r.prompt + r.gen) // bt) - r.blocks
                if need > 0:
                    while kv.available < need:
                        v = self._preempt_last()
                        preempted = True
                        if v is r:
                            break
                    if r.blocks == 0 and r.target == 0:  # r itself was preempted
                        break
                    kv.allocate(need)
                    r.blocks += need
            i += 1
        # 2. decodes, then unfinished prefills (chunked), then admissions.
        n_dec = 0
        kv_read = 0
        chunks: list[tuple[_Req, int]] = []
        if not prefill_only:
            for r in running:
                if r.done_pf >= r.target:
                    n_dec += 1
                    kv_read += r.prompt + r.gen
        left = self.budget - n_dec
        if self.n_prefilling:
            for r in running:
                if r.done_pf < r.target and left > 0:
                    c = min(r.target - r.done_pf, left)
                    chunks.append((r, c))
                    left -= c
        if not preempted and (prefill_only or not self.prefill_first):  # vllm-v0 admits in prefill iterations only
            w = self.waiting
            while w and len(running) < self.max_seqs:
                r = w[0]
                if r.added > t0:
                    break
                target = r.prompt + r.gen
                nb = -(-target // bt)
                if not kv.can_admit(nb):
                    break
                hits = kv.prefix_hits(r.prefix) if r.prefix else 0
                cached = min(hits * PREFIX_BLOCK_TOKENS, target - 1)
                todo = target - cached
                if self.chunked:
                    if left <= 0:
                        break
                    c = min(todo, left)
                else:
                    if todo > left and chunks:
                        break
                    c = todo
                w.popleft()
                if hits:
                    kv.touch(r.prefix, hits)
                kv.allocate(nb)
                r.blocks = nb
                r.target = target
                r.done_pf = cached
                if r.admitted < 0:
                    r.admitted = t0
                if r.cached < 0:
                    r.cached = cached
                running.append(r)
                self.n_prefilling += 1
                chunks.append((r, c))
                left -= c
        # 3. duration
        n_tok = n_dec
        work = 0.0
        for r, c in chunks:
            n_tok += c
            work += c * (r.done_pf + c / 2.0)
        lin = self._a + self._b * n_tok
        if lin < self._floor:
            lin = self._floor
        dt = lin + self._c * work + self._d * kv_read + self._e * n_dec + self._g * len(chunks)
        t1 = t0 + dt
        # 4. effects
        finished = False
        itl = self.itl
        if not prefill_only:
            for r in running:
                if r.done_pf >= r.target:
                    r.gen += 1
                    _push_tbt(r, t1 - r.last_token)  # = dt, unless a prefill-only iteration came between
                    if itl is not None:
                        itl.add(t1 - r.last_token)
                    r.last_token = t1
                    if r.gen >= r.output:
                        finished = True
        decoders_waited = prefill_only and len(running) > len(chunks)
        for r, c in chunks:
            r.done_pf += c
            if r.done_pf >= r.target:
                self.n_prefilling -= 1
                if r.gen == 0:
                    r.first_token = t1
                else:
                    _push_tbt(r, t1 - r.last_token)
                    if itl is not None:
                        itl.add(t1 - r.last_token)
                r.gen += 1
                r.last_token = t1
                if r.prefix:
                    k = min(len(r.prefix), r.prompt // PREFIX_BLOCK_TOKENS)
                    if k:
                        kv.insert(r.prefix[:k])
                if r.gen >= r.output:
                    finished = True
        self.t = t1
        self.iterations += 1
        self._stalled = decoders_waited
        if finished:
            self._finish(t1, done)

    def _finish(self, t: float, done: list[RequestRecord]) -> None:
        keep = []
        kv = self.kv
        for r in self.running:
            if r.gen >= r.output and r.done_pf >= r.target:
                kv.release(r.blocks)
                r.blocks = 0
                self.completed += 1
                n = r.output - 1
                done.append(RequestRecord(
                    id=r.id, instance=self.index, task=r.task, arrival_s=r.arrival, admitted_s=r.admitted,
                    first_token_s=r.first_token, finish_s=t, ttft_s=r.first_token - r.arrival,
                    e2e_s=t - r.arrival, tbt_mean_s=(t - r.first_token) / n if n > 0 else 0.0,
                    tbt_p99_s=r.tbt_top[0] if r.tbt_top else 0.0, tbt_max_s=r.tbt_max,
                    queue_wait_s=r.admitted - r.added, preemptions=r.preempt, prompt_tokens=r.prompt,
                    output_tokens=r.output, cached_prompt_tokens=max(r.cached, 0)))
            else:
                keep.append(r)
        self.running = keep
