"""The live worker: many instances in one process, driven by the stack clock,
fed by their partitions of ``assignments``.

``WorkerCore`` is the functional core (no I/O, time passed in): it owns one
engine per hosted index behind one interface (``services.backends``): the
``sim`` backend's ``phaser.engine.instance.Instance`` — the very engine the
simulator runs — or the ``openai`` backend's ``OpenAIInstance``, a real
engine over HTTP. It turns assignments into engine arrivals and finished
``RequestRecord``s into ``Completion``s and heartbeats. ``run_worker`` is the
Kafka shell around it.

Decisions:

* **Arrival time at the engine** = ``max(assignment.decided_s, horizon)`` where
  ``horizon`` is how far that engine has already been advanced. The router
  decided at ``decided_s``; the Kafka hop router→worker (a few wall ms, i.e.
  ``time_scale`` × that in stack seconds) is an artefact of emulating GPUs
  faster than real time, not a property of the modelled cluster, and the
  simulator has no such hop. An engine is never rewound, so a late message
  joins at the current horizon — that residue is the live-vs-simulator jitter
  the fidelity test bounds.
* Order on every wake: add what arrived, *then* ``advance(now)``, so no
  iteration that should contain a newcomer runs without it.
* **Duplicates**: an assignment for a request id this worker already holds or
  finished is ignored (a request is served once even if delivered twice).
* **Commits**: the committed offset of a partition is the offset of its oldest
  unfinished assignment, so a restarted worker re-reads exactly the requests
  that had not completed (the engine state died with the process).
* **Fencing** (failover, ``services.router``): every assignment carries an
  epoch; an assignment older than the newest epoch seen for its id is stale
  and dropped, and a fence notice (``revoked``) tells the worker that the router
  moved a request elsewhere: a copy it still holds is run out but never
  answered, so a worker that was only slow (or came back) does not answer twice.
  A newer epoch of a request already held here is adopted by the running copy.
* **Heartbeats**: one ``InstanceStatus`` per instance every ``heartbeat_s``
  stack seconds (default 0.5: at the default time scales this is tens of wall
  ms, the polling period production routers use — see field-notes.md).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import sys
from dataclasses import dataclass, field

from aiokafka import TopicPartition

import protos
from phaser.errors import PhaserError
from services.clock import StackClock
from services.lifecycle import install_stop_signals, mark_ready
from services.backends.sim import build_engines  # noqa: F401 - the default backend, re-exported
from services.kafka import (STOP_FLUSH_S, Committer, Publisher, bounded, Topics, ensure_topics, fetch, open_producer, read_back,
                            start_consumer, stop_consumer, warm_producer)

DEFAULT_HEARTBEAT_S = 0.5
#: finished request ids remembered for de-duplication (1 M ids ~ 100 MB at most; redeliveries
#: come from the uncommitted tail of a partition, orders of magnitude fewer)
DONE_WINDOW = 1_000_000
#: wall seconds between offset commits (a commit is a broker round trip)
COMMIT_EVERY_S = 0.5


@dataclass(slots=True)
class _Meta:
    """What a completion needs from its assignment."""

    router_wait_s: float
    policy: str
    policy_version: int
    partition: int
    offset: int
    epoch: int = 0


def _rejected(a: protos.Assignment, req: protos.Request, reason: str, t: float) -> protos.Completion:
    """The completion that tells the client its request will never be served."""
    return protos.Completion(
        request_id=req.id, instance=a.instance, task=req.task, policy=a.policy, policy_version=a.policy_version,
        status="rejected", reason=reason[:2000], epoch=a.epoch, arrival_s=req.arrival_s, admitted_s=t,
        first_token_s=t, finish_s=t, ttft_s=0.0, tbt_mean_s=0.0, tbt_p99_s=0.0, tbt_max_s=0.0,
        e2e_s=max(0.0, t - req.arrival_s), router_wait_s=a.router_wait_s, queue_wait_s=0.0, preemptions=0,
        prompt_tokens=req.prompt_tokens, output_tokens=0)


@dataclass
class WorkerCore:
    """Hosts engines; see the module docstring. ``engines``: index -> Instance."""

    engines: dict[int, object]
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    horizon: dict[int, float] = field(default_factory=dict)
    _meta: dict[str, _Meta] = field(default_factory=dict)
    _done_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered, capped at DONE_WINDOW
    _outstanding: dict[int, dict[int, str]] = field(default_factory=dict)  # partition -> offset -> id (insertion = offset order)
    _next_heartbeat: float = -math.inf
    completed: int = 0
    duplicates: int = 0
    misrouted: int = 0
    rejected: int = 0
    stale: int = 0
    skewed: int = 0
    cancelled: int = 0

    def __post_init__(self) -> None:
        if not self.engines:
            raise PhaserError("a worker needs at least one instance")
        if not self.heartbeat_s > 0:
            raise PhaserError(f"--heartbeat-s must be > 0, got {self.heartbeat_s}")
        self._last_added: dict[int, float] = {}
        self._held: list = []  # heap of (finish_s, seq, RequestRecord) not yet due
        self._seq = 0
        self._answers: list[protos.Completion] = []  # rejected completions not yet published
        self._epoch: dict[str, int] = {}  # newest epoch seen per request id (fencing)
        self._revoked: dict[str, int] = {}  # request id -> epoch of the fence notice

    def on_assignment(self, a: protos.Assignment, partition: int = -1, offset: int = -1) -> str | None:
        """Hand an assignment to its engine. Returns None when accepted (or
        answered with a ``rejected`` completion), else why it was dropped:
        a duplicate or stale-epoch request id, or an instance this worker does
        not host. A request the instance can never serve (longer than the
        model's context or than its whole KV cache) is answered at once with a
        completion of status ``rejected`` and the reason (``step`` returns it),
        so the client hears and the router's view frees it."""
        eng = self.engines.get(a.instance)
        if eng is None:
            self.misrouted += 1
            return f"instance {a.instance} is not hosted by this worker"
        rid = a.request.id
        if a.revoked:
            self._epoch[rid] = max(a.epoch, self._epoch.get(rid, 0))
            m = self._meta.get(rid)
            if m is not None and m.epoch < a.epoch:
                if m.offset >= 0:  # nothing left to re-read on a restart
                    self._outstanding.get(m.partition, {}).pop(m.offset, None)
                cancel = getattr(eng, "cancel", None)  # a real engine stops serving it; a simulated one runs it out
                if cancel is not None and cancel(rid):
                    del self._meta[rid]
                    self._epoch.pop(rid, None)
                    self.cancelled += 1
                else:
                    self._revoked[rid] = a.epoch
            return "revoked"
        if a.epoch < self._epoch.get(rid, 0):
            self.stale += 1
            return "stale"
        m = self._meta.get(rid)
        if m is not None and a.epoch > m.epoch:  # re-routed back to this worker: the running copy serves it
            self._epoch[rid] = m.epoch = a.epoch
            self._revoked.pop(rid, None)
            return "duplicate"
        if rid in self._meta or rid in self._done_ids:
            self.duplicates += 1
            return "duplicate"
        self._epoch[rid] = a.epoch
        t = max(a.decided_s, self.horizon.get(a.instance, -math.inf), self._last_added.get(a.instance, -math.inf))
        req = a.request
        if req.arrival_s > t:
            # the client's clock is ahead of ours (skew): latencies are measured
            # from when the request reached this engine, never negative
            self.skewed += 1
            req = req.model_copy(update={"arrival_s": t})
        why = eng.refusal(req)
        if why is not None:
            self.rejected += 1
            self._done(rid)
            self._answers.append(_rejected(a, req, why, t))
            return None
        eng.add(req, t)
        self._last_added[a.instance] = t
        self._meta[rid] = _Meta(a.router_wait_s, a.policy, a.policy_version, partition, offset, a.epoch)
        if offset >= 0:
            self._outstanding.setdefault(partition, {})[offset] = rid
        return None

    def _done(self, rid: str) -> None:
        d = self._done_ids
        d[rid] = None
        if len(d) > DONE_WINDOW:
            del d[next(iter(d))]  # the oldest: a redelivery comes from the uncommitted tail, far younger

    def mark_completed(self, ids) -> None:
        """Request ids that ``completions`` already holds (read at start-up): a
        restarted worker must not serve them again when it re-reads their
        assignments from the committed offset."""
        for rid in ids:
            self._done(rid)

    def step(self, now: float) -> tuple[list[protos.Completion], list[protos.InstanceStatus]]:
        """Advance every engine to ``now``; return the requests whose finish time
        has passed and, if a heartbeat is due, one status per instance.

        The engine may finish a request up to one iteration after the horizon
        (``Instance.advance``); such a completion is held until the stack clock
        reaches its ``finish_s``, so nobody learns of it before the simulated GPU
        is done."""
        for i, eng in self.engines.items():
            if now > self.horizon.get(i, -math.inf):
                for rec in eng.advance(now):
                    self._seq += 1
                    heapq.heappush(self._held, (rec.finish_s, self._seq, rec))
                self.horizon[i] = now
        out, self._answers = self._answers, []
        while self._held and self._held[0][0] <= now:
            rec = heapq.heappop(self._held)[2]
            m = self._meta.pop(rec.id)
            self._done(rec.id)
            if m.offset >= 0:
                self._outstanding[m.partition].pop(m.offset, None)
            self._epoch.pop(rec.id, None)
            if self._revoked.pop(rec.id, -1) > m.epoch:  # re-routed elsewhere meanwhile: not ours to answer
                self.stale += 1
                continue
            self.completed += 1
            out.append(rec.to_completion(router_wait_s=m.router_wait_s, policy=m.policy, policy_version=m.policy_version,
                                         epoch=m.epoch))
        statuses: list[protos.InstanceStatus] = []
        if now >= self._next_heartbeat:
            statuses = [eng.status(now) for eng in self.engines.values()]
            self._next_heartbeat = now + self.heartbeat_s
        return out, statuses

    def next_wake(self) -> float:
        """Stack time of the next thing that needs this worker without a new message."""
        if self._answers:
            return -math.inf
        t = min((e.next_event_time() for e in self.engines.values()), default=math.inf)
        if self._held:
            t = min(t, self._held[0][0])
        return min(t, self._next_heartbeat)

    def commit_positions(self, seen: dict[int, int]) -> dict[int, int]:
        """Per partition: offset to commit = oldest unfinished assignment, else
        the next offset after the last one seen (``seen``: partition -> next offset)."""
        out = {}
        for p, nxt in seen.items():
            pending = self._outstanding.get(p)
            out[p] = next(iter(pending)) if pending else nxt
        return out

    @property
    def in_flight(self) -> int:
        return len(self._meta)



async def run_worker(bootstrap: str, core: WorkerCore, clock: StackClock, topics: Topics = Topics(),
                     stop: asyncio.Event | None = None, n_partitions: int | None = None,
                     ready: asyncio.Event | None = None, metrics=None) -> WorkerCore:
    """The Kafka loop: read this worker's partitions of ``assignments``, drive the
    engines, publish completions and heartbeats, until ``stop`` is set (``ready``
    is set once it is serving). ``metrics``: a ``services.metrics.Metrics``."""
    from services.metrics import ConsumerStats, Metrics
    from services.metrics.worker import WorkerMetrics

    stop = stop or asyncio.Event()
    metrics = metrics or Metrics("worker")
    wm = WorkerMetrics(metrics, core)
    instances = sorted(core.engines)
    await ensure_topics(bootstrap, n_partitions or (max(instances) + 1), topics)
    producer, idempotent = await open_producer(bootstrap, client_id="phaser-worker")
    pub = Publisher(producer, topics, source=f"worker[{instances[0]}-{instances[-1]}]", clock_now=clock.now, idempotent=idempotent)
    pub.metrics = metrics
    name = topics.name("assignments")
    consumer = await start_consumer(bootstrap, [(name, i) for i in instances], group_id=topics.prefix + "phaser-worker",
                                    client_id="phaser-worker")
    stats = ConsumerStats(metrics, "phaser-worker", topics, consumer)
    await stats.started()
    seen: dict[int, int] = {}
    core.mark_completed(await completed_ids(bootstrap, topics, set(instances)))
    await warm_producer(producer, topics, ("completions", "instance-status", "dead-letters"))
    mark_ready(f"worker-{instances[0]}-{instances[-1]}")
    if ready is not None:
        ready.set()
    committer = Committer(consumer, pub, COMMIT_EVERY_S, stats=stats)

    def positions():
        return {TopicPartition(name, p): o for p, o in core.commit_positions(seen).items()}

    try:
        while not stop.is_set():
            wait = min(clock.wall_until(core.next_wake()), COMMIT_EVERY_S)
            msgs, fetched = await fetch(consumer, pub, wait, stats)
            now = clock.now()
            for m in msgs:
                try:
                    why = core.on_assignment(m.msg, m.partition, m.offset)
                except Exception as e:  # no single message may stop the worker
                    why = f"worker could not serve it: {e.__class__.__name__}: {e}"
                if why is not None and why not in ("duplicate", "stale", "revoked"):
                    await pub.dead_letter("assignments", protos.encode(m.msg), why, m.partition, m.offset)
            for tp, nxt in fetched.items():
                seen[tp.partition] = nxt
            completions, statuses = core.step(now)
            for c in completions:
                wm.on_completion(c)
                await pub.send("completions", c, key=c.request_id.encode())
            for st in statuses:
                wm.on_status(st)
                await pub.send("instance-status", st)
            committer.maybe(positions)  # completions are acknowledged before their assignments are committed
            committer.check()  # BrokerLost: exit non-zero rather than run on stuck
    finally:
        await committer.close(positions)
        await bounded(stop_consumer(consumer), STOP_FLUSH_S, "stopping the consumer")
        await bounded(producer.stop(), STOP_FLUSH_S, "stopping the producer")
    return core


async def completed_ids(bootstrap: str, topics: Topics, instances: set[int], timeout_s: float = 120.0) -> set[str]:
    """Ids of requests ``completions`` already holds for these instances: the
    state a restarted worker derives from the stream (its engines died with the
    old process), so it never serves a finished request twice."""
    done, complete = await read_back(bootstrap, topics, "completions", [0], timeout_s=timeout_s,
                                     client_id="phaser-worker-recover")
    if not complete:
        print(f"warning: read {len(done)} completions in {timeout_s:.0f}s, not all of them; "
              "requests completed after those may be served again", file=sys.stderr)
    return {c.request_id for c in done if c.instance in instances}


def main(bootstrap: str, instances: list[int], profile, time_scale: float, chunked_prefill: bool,
         heartbeat_s: float, topics: Topics, n_partitions: int | None = None, backend: str = "sim",
         endpoints: list[str] | None = None, openai_cfg=None, start_deadline_s: float = 60.0,
         metrics_port: int | None = None) -> None:
    """``backend``: ``sim`` (simulated instances of ``profile``) or ``openai``
    (one real engine per hosted instance, ``endpoints`` in instance order;
    ``profile`` is then what the router plans with and the KV total the
    heartbeats scale to)."""
    from phaser.engine.profiles import get_profile

    clock = StackClock(time_scale)
    if backend == "openai":
        if not endpoints or len(endpoints) != len(instances):
            raise PhaserError(f"--backend openai needs one --endpoint per hosted instance: "
                              f"{len(instances)} instance(s), {len(endpoints or [])} endpoint(s)")
        if time_scale != 1.0:
            raise PhaserError("--backend openai drives real engines in real time: use --time-scale 1")
    elif backend != "sim":
        raise PhaserError(f"unknown backend {backend!r}; known: sim, openai")
    prof = get_profile(profile) if isinstance(profile, str) else profile
    holder: dict = {}
    from services.metrics import Metrics

    metrics = Metrics(f"worker-{instances[0]}-{instances[-1]}")
    metrics.serve(metrics_port)

    async def _run():
        stop = asyncio.Event()
        install_stop_signals(stop)
        if backend == "openai":
            from services.backends.openai import OpenAIConfig, OpenAIInstance

            engines = {i: OpenAIInstance(i, url, prof, clock, openai_cfg or OpenAIConfig())
                       for i, url in zip(instances, endpoints)}
            try:
                await asyncio.gather(*(e.start(start_deadline_s) for e in engines.values()))
            except PhaserError:
                await asyncio.gather(*(e.close() for e in engines.values()))
                raise
        else:
            engines = build_engines(instances, prof, chunked_prefill)
        core = holder["core"] = WorkerCore(engines, heartbeat_s=heartbeat_s)
        try:
            await run_worker(bootstrap, core, clock, topics, stop, n_partitions, metrics=metrics)
        finally:
            if backend == "openai":
                await asyncio.gather(*(e.close() for e in engines.values()))

    asyncio.run(_run())
    core = holder["core"]
    print(f"worker {instances[0]}-{instances[-1]}: {core.completed} completed, {core.rejected} rejected, "
          f"{core.in_flight} in flight at exit, {core.duplicates} duplicate assignments ignored", file=sys.stderr)
