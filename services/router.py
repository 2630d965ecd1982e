"""The router service: ``requests`` in, ``assignments`` (partition = instance) out.

``RouterCore`` is the functional core (no I/O, time passed in): a FIFO router
queue, the ``ClusterView`` shared with the simulator, a policy from
``phaser.policies.make_policy`` and an output-length predictor. ``run_router``
is the Kafka shell.

Decisions:

* A request becomes a ``phaser.types.Job`` (no oracle length) before the
  predictor's output is attached and before any policy sees it.
* **De-duplication**: a request id is routed once, even if ``requests``
  delivers it twice (producer retry, router restart re-reading uncommitted
  offsets). The last ``DEDUPE_WINDOW`` ids are remembered (1 M ids ≈ 100 MB
  of Python strings at most): a redelivery comes from the uncommitted tail of
  ``requests``, at most ``COMMIT_EVERY_S`` of traffic plus the router queue,
  orders of magnitude fewer records than that.
* **WAIT**: the head of the queue stays at the head and the policy is asked
  again every router tick (0.02 stack seconds, the paper's tick). Requests behind
  it wait too (FCFS, as in the paper's router queue).
* **Time**: decisions happen at the stack-clock ``now``; ``router_wait_s`` =
  decision time − ``arrival_s``, so it includes the requests-topic hop.
* **Features for every decision**: when the serving policy computes no feature
  vector (any heuristic), the router encodes the RL state itself
  (``phaser.rl.features``, numpy, ~10 µs) and publishes it with the action it
  took, so the trainer can learn off-policy from whatever policy serves —
  "learn better routing from your own traffic".
* The view is fed from the router's own assignments (never stale), from
  ``completions`` and from ``instance-status``; completions of requests this
  router never assigned (before a restart) are ignored by the view.
* **Failover** (``phaser.cluster.health``): an instance whose heartbeats stop,
  or whose worker reports it unhealthy, is down. The router then (1) never
  routes there: whatever a policy picks, a down instance is replaced by the live
  one with the fewest outstanding requests (rotating ties), the same for every
  policy, and with no live instance at all the request waits; (2) re-routes the
  requests it had sent there and not yet seen complete: each goes back to the
  head of the queue with ``epoch + 1``, and a fence notice (an assignment with
  ``revoked``) goes to the old partition, so a revived worker drops its stale
  copy instead of answering twice. A request routed ``max_attempts`` times
  (default 3) that fails over again ends with a completion of status ``error``.
  If a stale copy completes first anyway (it finished just before the failover
  was detected), that answer stands and the re-routed copy is revoked in turn.
  Limit: in-flight tracking is the router's memory; a router restart forgets
  which requests were in flight, so requests on an instance that dies while
  the router is down wait for that worker to come back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import zlib
from collections import deque
from dataclasses import dataclass, field

import protos
from phaser.cluster.health import DOWN_FLOOR_WALL_S, Health, down_after
from phaser.errors import PhaserError
from phaser.policies._select import RotatingArg
from phaser.policies.mixing import warm as warm_scorers
from phaser.types import Job
from services.clock import StackClock
from services.lifecycle import mark_ready
from services.kafka import (STOP_FLUSH_S, Committer, Publisher, bounded, Topics, ensure_topics, fetch, open_producer, read_back,
                            start_consumer, stop_consumer, warm_producer)

#: request ids remembered for de-duplication (see module docstring)
DEDUPE_WINDOW = 1_000_000
#: the paper's router tick (stack seconds): the shortest decode iteration
ROUTER_TICK_S = 0.02
#: wall seconds between offset commits (``services.kafka.Committer``)
COMMIT_EVERY_S = 0.5
#: wall seconds between checks for a finished background policy load (hot swap)
SWAP_POLL_S = 0.01
#: routings of one request before a further failover ends it with status ``error``
MAX_ATTEMPTS = 3
#: wall seconds a replica waits for its first share of ``requests`` before it gives up
JOIN_TIMEOUT_S = 120.0
#: ids of finished requests a replica remembers, so that a peer's assignment read after its
#: completion (another topic, another partition: no order between them) is not applied
DONE_WINDOW = 200_000


def _sampled(request_id: str, share: float) -> bool:
    """Whether ``request_id``'s decision records features at ``share`` (a stable hash: every
    replica and every restart picks the same requests)."""
    return zlib.crc32(request_id.encode()) % 10_000 < share * 10_000


@dataclass(slots=True)
class _Flight:
    """A request routed and not yet seen complete."""

    req: protos.Request
    job: Job
    instance: int
    epoch: int
    attempts: int  # routings so far
    decided_s: float


@dataclass
class RouterCore:
    policy: object
    view: object  # phaser.cluster.view.ClusterView
    predictor: object  # phaser.predictor API: .predict(request) -> (expected tokens, bucket), optional .update
    tick_s: float = ROUTER_TICK_S
    #: of (Request, Job, offset in `requests` or -1, epoch, attempts, partition of `requests`)
    queue: deque = field(default_factory=deque)
    seen: dict[str, None] = field(default_factory=dict)  # insertion-ordered: oldest first
    duplicates: int = 0
    routed: int = 0
    not_served: int = 0  # completions with status rejected/error
    #: ``services.policy_swap.PolicySwap`` when versions are hot-swapped (``--store``):
    #: it decides instead of ``policy`` (canary split, guard, exploration)
    swap: object | None = None
    #: ``phaser.rl.features.Encoder``: encodes the state when the policy gives no features
    encoder: object | None = None
    #: share of decisions whose assignment carries the RL state (``features``) for the trainer,
    #: chosen by request id (the same requests whichever replica decides); at 64 instances the
    #: vector is 515 numbers, most of an assignment's bytes and its encoding time
    feature_share: float = 1.0
    #: ``phaser.cluster.health.Health``; None = every instance always live (no failover)
    health: Health | None = None
    max_attempts: int = MAX_ATTEMPTS
    inflight: dict[str, _Flight] = field(default_factory=dict)
    rerouted: int = 0   # re-routings after a failover
    diverted: int = 0   # decisions moved off a down instance
    failed: int = 0     # requests ended with status error
    stale_answers: int = 0  # completions of a copy that had been re-routed
    waits: int = 0  # times the head of the queue was held back (policy wait, no live instance)
    #: this replica's id in a group of routers ('' alone): stamped on its assignments
    router_id: str = ""
    peer_assignments: int = 0  # peers' decisions applied to the view
    peer_late: int = 0  # peers' decisions read after the request had completed (not applied)
    peer_lag_s: float = 0.0  # the newest peer decision's age when read (stack seconds)
    peer_lag_max_s: float = 0.0
    peer_lag_sum_s: float = 0.0  # over every peer decision read (revoked notices and late ones included)
    peer_reads: int = 0
    peers: dict[str, float] = field(default_factory=dict)  # peer id -> stack time of its newest decision read
    dropped: int = 0  # queued requests handed back when their partition moved to another replica
    done: dict[str, None] = field(default_factory=dict)  # recently finished ids (``DONE_WINDOW``)
    _outbox: list = field(default_factory=list)  # fence notices and error completions to publish
    _divert: RotatingArg = field(default_factory=RotatingArg)
    _retry_at: float = -math.inf

    def on_request(self, req: protos.Request, offset: int = -1, partition: int = 0) -> bool:
        """Queue a request (read at ``offset`` of ``requests`` partition ``partition``); False if
        its id was already seen (ignored)."""
        if req.id in self.seen:
            self.duplicates += 1
            return False
        self.seen[req.id] = None
        if len(self.seen) > DEDUPE_WINDOW:
            del self.seen[next(iter(self.seen))]
        tokens, bucket = self.predictor.predict(req)
        self.queue.append((req, Job.from_request(req, tokens, bucket), offset, 0, 0, partition))
        return True

    # ------------------------------------------------------------- replicas
    def on_peer_assignment(self, a: protos.Assignment, t: float) -> bool:
        """Another replica's decision (read from ``assignments``): apply it to the view, as the
        simulator's ``ReplicaSet`` does with its delay, and remember the id as routed (its
        ``requests`` partition may move here). Own decisions (the echo) are skipped: they were
        applied when made. False for an own echo."""
        if a.router == self.router_id:
            return False
        rid = a.request.id
        self.mark_routed(rid)
        age = max(0.0, t - a.decided_s)
        self.peer_reads += 1
        self.peers[a.router] = max(self.peers.get(a.router, a.decided_s), a.decided_s)
        self.peer_lag_s = age
        self.peer_lag_max_s = max(self.peer_lag_max_s, age)
        self.peer_lag_sum_s += age
        where = self.view.instance_of(rid)
        if a.revoked:  # a peer re-routed it away from a.instance
            if where == a.instance:
                self.view.on_complete(rid, where, t)
            return True
        if rid in self.done:  # its completion was read first
            self.peer_late += 1
            return True
        if where == a.instance:
            return True
        if where is not None:  # a peer's re-route read before its fence notice
            self.view.on_complete(rid, where, t)
        self.view.on_assign(Job.from_request(a.request, a.predicted_tokens, a.predicted_bucket), a.instance, t)
        self.peer_assignments += 1
        return True

    def drop_partitions(self, parts: set[int], next_offsets: dict[int, int]) -> dict[int, int]:
        """``requests`` partitions moved to another replica: hand back the requests queued from
        them and not yet routed (they are forgotten as seen, so they are routed if they come
        back). Returns partition -> offset to commit: the oldest dropped request's, else
        ``next_offsets`` (everything read was routed), so the new owner re-reads exactly what
        this replica did not route."""
        commit = {p: next_offsets[p] for p in parts if p in next_offsets}
        keep = deque()
        for q in self.queue:
            if q[2] >= 0 and q[5] in parts:
                commit[q[5]] = min(commit.get(q[5], q[2]), q[2])
                self.seen.pop(q[0].id, None)
                self.dropped += 1
            else:
                keep.append(q)
        self.queue = keep
        return commit

    def mark_routed(self, rid: str) -> None:
        """A request a previous router incarnation already assigned (read back at start)."""
        self.seen[rid] = None
        if len(self.seen) > DEDUPE_WINDOW:
            del self.seen[next(iter(self.seen))]

    def on_completion(self, c: protos.Completion, t: float) -> None:
        if self.router_id:  # replicas: a peer's assignment read after this is not applied
            self.done[c.request_id] = None
            if len(self.done) > DONE_WINDOW:
                del self.done[next(iter(self.done))]
        f = self.inflight.get(c.request_id)
        if f is not None and c.epoch < f.epoch:
            # a copy we had re-routed answered first: its answer stands; revoke the newer copy
            self.stale_answers += 1
            del self.inflight[c.request_id]
            self.view.on_complete(c.request_id, f.instance, t)
            self._outbox.append(("assignments", self._notice(f, f.epoch + 1, t)))
        elif f is not None:
            del self.inflight[c.request_id]
        elif c.epoch > 0 or self.health is not None and self.health.down:
            self._unqueue(c.request_id)  # answered while waiting to be re-routed
        where = self.view.instance_of(c.request_id)  # a re-routed request may be answered by its old instance
        if where is None and 0 <= c.instance < len(self.view.instances):
            where = c.instance
        if where is not None:
            self.view.on_complete(c.request_id, where, t)  # a rejected request frees the view too
        if c.status != "ok":
            self.not_served += 1
            return
        if self.swap is not None:
            self.swap.on_completion(c)
        update = getattr(self.predictor, "update", None)
        if update is not None:  # learn from finished requests (their true length is public now)
            update(c.prompt_tokens, c.task, c.output_tokens)

    def adopt_profiles(self, names: list[str]) -> bool:
        """A ``policy-updates`` ``kind=profiles``: plan with the twin's fitted hardware. False when
        frozen (``--freeze``); ``PhaserError`` for a list that does not fit this router."""
        from phaser.engine.profiles import get_profile

        if self.swap is not None and self.swap.freeze:
            return False
        if len(names) != len(self.view.instances):
            raise PhaserError(f"kind=profiles lists {len(names)} profiles for {len(self.view.instances)} instances")
        self.view.set_profiles([get_profile(n) for n in names])
        logging.getLogger("phaser.router").warning("planning with the twin's fitted profiles: %s", ", ".join(names))
        return True

    def on_status(self, s: protos.InstanceStatus, t: float) -> None:
        self.view.on_status(s, t)
        if self.health is not None and self.health.on_status(s.instance, s.health == "ok", s.reason, t, s.ts_s) == "down":
            self._fail_over(s.instance, t)

    # ------------------------------------------------------------- failover
    def _notice(self, f: _Flight, epoch: int, t: float) -> protos.Assignment:
        return protos.Assignment(
            request=f.req, instance=f.instance, policy="failover", policy_version=0, decided_s=t,
            router_wait_s=0.0, predicted_tokens=f.job.predicted_tokens, predicted_bucket=f.job.predicted_bucket,
            action=-1, epoch=min(epoch, 1_000), revoked=True, router=self.router_id)

    def _unqueue(self, rid: str) -> None:
        for k, q in enumerate(self.queue):
            if q[0].id == rid:
                del self.queue[k]
                return

    def _fail_over(self, i: int, t: float) -> None:
        """Instance ``i`` is down: re-route what it holds (see the module docstring)."""
        moved = [f for f in self.inflight.values() if f.instance == i]
        back = []
        for f in moved:
            del self.inflight[f.req.id]
            self.view.on_complete(f.req.id, i, t)
            self._outbox.append(("assignments", self._notice(f, f.epoch + 1, t)))
            if f.attempts >= self.max_attempts:
                self.failed += 1
                self._outbox.append(("completions", self._error(f, t)))
            else:
                back.append((f.req, f.job, -1, f.epoch + 1, f.attempts, -1))
                self.rerouted += 1
        self.queue.extendleft(reversed(back))  # oldest first, ahead of new requests
        if back:
            self._retry_at = -math.inf

    def _error(self, f: _Flight, t: float) -> protos.Completion:
        req = f.req
        why = self.health.down.get(f.instance, "down") if self.health is not None else "down"
        return protos.Completion(
            request_id=req.id, instance=f.instance, task=req.task, status="error",
            reason=f"routed {f.attempts} times; instance {f.instance} failed too ({why})"[:2000], epoch=f.epoch,
            arrival_s=req.arrival_s, admitted_s=t, first_token_s=t, finish_s=t, ttft_s=0.0, tbt_mean_s=0.0,
            tbt_p99_s=0.0, tbt_max_s=0.0, e2e_s=max(0.0, t - req.arrival_s), router_wait_s=0.0, queue_wait_s=0.0,
            preemptions=0, prompt_tokens=req.prompt_tokens, output_tokens=0)

    def check_health(self, now: float) -> None:
        """Declare silent instances down (and re-route what they hold)."""
        if self.health is not None:
            for i in self.health.check(now):
                self._fail_over(i, now)

    def take_outbox(self) -> list[tuple[str, object]]:
        """Fence notices and error completions produced since the last call: (topic, message)."""
        out, self._outbox = self._outbox, []
        return out

    def _live_choice(self, i: int) -> int | None:
        """``i`` if it is live, else the live instance with the fewest outstanding requests."""
        h = self.health
        if h is None or h.live(i):
            return i
        if not h.any_live:
            return None
        self.diverted += 1
        return self._divert.argmin([v.outstanding for v in self.view.instances], allowed=h.live)

    def decide(self, now: float) -> list[protos.Assignment]:
        """Route from the head of the queue until it is empty or the policy
        waits; a waiting head is re-asked only from ``now + tick`` on."""
        out: list[protos.Assignment] = []
        if not self.queue or now < self._retry_at:
            return out
        self.view.advance_to(now)
        n = len(self.view.instances)
        while self.queue:
            req, job, _, epoch, attempts, _ = self.queue[0]
            self.view.router_queue_len = len(self.queue)
            if self.swap is not None:
                d = self.swap.decide(job, self.view, now)
                i, name, version, feats, action = d.instance, d.policy, d.version, d.features, d.action
            else:
                i = self.policy.decide(job, self.view)
                name, version = self.policy.name, int(self.policy.version)
                record = self.feature_share >= 1.0 or _sampled(req.id, self.feature_share)
                feats = getattr(self.policy, "last_features", None) if record else None
                if feats is None and record and i is not None and self.encoder is not None:
                    feats = self.encoder(job, self.view)
                action = i if feats is not None else -1
            if i is not None and not (isinstance(i, int) and 0 <= i < n):
                raise RuntimeError(f"policy {name} returned instance {i!r} with {n} instances")
            if i is not None:
                i = self._live_choice(i)
                if feats is not None:
                    action = i
            if i is None:
                self._retry_at = now + self.tick_s
                self.waits += 1
                break
            self.queue.popleft()
            self.view.on_assign(job, i, now)
            self.inflight[req.id] = _Flight(req, job, i, epoch, attempts + 1, now)
            out.append(protos.Assignment(
                request=req, instance=i, policy=name, policy_version=version,
                decided_s=now, router_wait_s=max(0.0, now - req.arrival_s), predicted_tokens=job.predicted_tokens,
                predicted_bucket=job.predicted_bucket, features=None if feats is None else [float(x) for x in feats],
                action=action, epoch=epoch, router=self.router_id,
            ))
            self.routed += 1
        self.view.router_queue_len = len(self.queue)
        return out

    def next_wake(self) -> float:
        return self._retry_at if self.queue else math.inf

    def requests_commit(self, next_offset: int, partition: int = 0) -> int:
        """Offset of ``requests`` partition ``partition`` safe to commit: the oldest request
        still queued from it, else ``next_offset`` (everything read was routed)."""
        for q in self.queue:  # re-routed requests (offset -1) sit ahead of the fresh ones
            if q[2] >= 0 and q[5] == partition:
                return q[2]
        return next_offset


PREDICTORS = ("online", "mean")


def make_predictor(spec: str):
    """``online``: ``phaser.predictor.LengthPredictor`` starting empty and learning
    from every completion the router sees; ``mean``: the global running mean
    (baseline); anything else is a saved LengthPredictor JSON file (which then
    keeps learning online too)."""
    from phaser.predictor import LengthPredictor, MeanPredictor

    if spec == "online":
        return LengthPredictor()
    if spec == "mean":
        return MeanPredictor()
    if not spec.endswith(".json"):
        raise PhaserError(f"unknown predictor {spec!r}: use {', '.join(PREDICTORS)} or a saved predictor .json file")
    return LengthPredictor.load(spec)


def build_core(policy_name: str, n_instances: int, profiles: list[str], seed: int, predictor: str,
               policy_options: dict | None = None) -> RouterCore:
    from phaser.cluster.view import ClusterView
    from phaser.engine.profiles import get_profile
    from phaser.policies import make_policy

    if len(profiles) == 1:
        profiles = profiles * n_instances
    if len(profiles) != n_instances:
        raise PhaserError(f"--profile lists {len(profiles)} profiles for {n_instances} instances; give one or one per instance")
    from phaser.rl.features import Encoder, FeatureSpec

    view = ClusterView([get_profile(p) for p in profiles])
    return RouterCore(make_policy(policy_name, n_instances, seed, **(policy_options or {})), view,
                      make_predictor(predictor), encoder=Encoder(FeatureSpec(n_instances)))


async def run_router(bootstrap: str, core: RouterCore, clock: StackClock, topics: Topics = Topics(),
                     stop: asyncio.Event | None = None, ready: asyncio.Event | None = None,
                     metrics=None, routers: int = 1) -> RouterCore:
    """The Kafka loop; runs until ``stop`` is set (``ready`` is set once it is serving).
    ``metrics``: a ``services.metrics.Metrics`` to export to (``services.metrics.router``).

    With ``core.router_id`` set, this is one replica of a group (``routers``: the group's size,
    one ``requests`` partition each): it reads ``requests`` as a member of the consumer group
    ``phaser-router`` (the broker deals the partitions and moves them when a replica joins,
    leaves or dies), and reads every partition of ``assignments`` with its own consumer, so its
    ``ClusterView`` holds every replica's decisions (``RouterCore.on_peer_assignment``)."""
    import time

    from aiokafka import TopicPartition
    from aiokafka.abc import ConsumerRebalanceListener

    from services.kafka import commit, forget_positions, partition_count, start_group_consumer, Pace
    from services.metrics import ConsumerStats, Metrics
    from services.metrics.router import RouterMetrics

    stop = stop or asyncio.Event()
    metrics = metrics or Metrics("router")
    rm = RouterMetrics(metrics, core, clock)
    n = len(core.view.instances)
    group = bool(core.router_id)
    await ensure_topics(bootstrap, n, topics, routers=routers)
    if group and (have := await partition_count(bootstrap, topics.name("assignments"))) != n:
        raise PhaserError(f"router {core.router_id}: the group routes to {have} instances (topic "
                          f"{topics.name('assignments')} has {have} partitions), this replica was started with {n}")
    producer, idempotent = await open_producer(bootstrap, client_id="phaser-router")
    pub = Publisher(producer, topics, source="router", clock_now=clock.now, idempotent=idempotent)
    pub.metrics = metrics
    req_topic = topics.name("requests")
    inputs = ("completions", "instance-status") + (("policy-updates",) if core.swap is not None else ())
    if group:
        side = [(topics.name("assignments"), p) for p in range(n)] + [(topics.name(t), 0) for t in inputs]
        # its peers' decisions, completions and heartbeats: paced (services.kafka.Pace), not hop-latency
        consumer = await start_consumer(bootstrap, side, group_id=f"{topics.prefix}phaser-router-{core.router_id}",
                                        client_id=f"phaser-router-{core.router_id}", pace=Pace.peer_view(clock.time_scale))
    else:
        consumer = await start_consumer(bootstrap, [(topics.name(t), 0) for t in ("requests",) + inputs],
                                        group_id=topics.prefix + "phaser-router", client_id="phaser-router")
    stats = ConsumerStats(metrics, "phaser-router", topics, consumer)
    await stats.started()
    for rid in await recent_assignment_ids(bootstrap, topics, n):  # a restarted router must not route them again
        core.mark_routed(rid)
    seen: dict = {}  # next offset per partition of the side consumer (and of `requests` alone)
    req_seen: dict = {}  # group mode: next offset per owned `requests` partition
    req_consumer = None
    log = logging.getLogger("phaser.router")

    class _Moves(ConsumerRebalanceListener):
        """Partitions of ``requests`` moving between replicas (the broker's group coordinator)."""

        async def on_partitions_revoked(self, revoked):
            parts = {tp.partition for tp in revoked if tp.topic == req_topic}
            if not parts:
                return
            await bounded(pub.flush(), STOP_FLUSH_S, "flushing before a rebalance")  # the next owner reads them
            nxt = {tp.partition: o for tp, o in req_seen.items() if tp.partition in parts}
            back = core.drop_partitions(parts, nxt)
            await commit(req_consumer, {TopicPartition(req_topic, p): o for p, o in back.items()})
            for p in parts:
                req_seen.pop(TopicPartition(req_topic, p), None)
            rm.rebalances.inc()
            log.warning("router %s: requests partitions %s moved away", core.router_id, sorted(parts))

        async def on_partitions_assigned(self, assigned):
            mine = [tp for tp in assigned if tp.topic == req_topic]
            forget_positions(req_consumer, mine)
            # what the previous owner routed is on `assignments` by now (it flushed, or it died a
            # session timeout ago): remember it, so its unconsumed tail is not routed twice
            for rid in await recent_assignment_ids(bootstrap, topics, n):
                core.mark_routed(rid)
            rm.owned.set(len(req_consumer.assignment()))
            log.warning("router %s: owns requests partitions %s", core.router_id,
                        sorted(tp.partition for tp in req_consumer.assignment()))

    if group:
        req_consumer = await start_group_consumer(bootstrap, req_topic, topics.prefix + "phaser-router", _Moves(),
                                                  client_id=f"phaser-router-{core.router_id}")
        req_stats = ConsumerStats(metrics, "phaser-router-requests", topics, req_consumer)
        await req_stats.started()
        # ready = owning a share: requests published before the group settles would wait out the join
        t_join = time.monotonic()
        while not req_consumer.assignment():
            if time.monotonic() - t_join > JOIN_TIMEOUT_S:
                raise PhaserError(f"router {core.router_id}: the group {topics.prefix}phaser-router gave this replica "
                                  f"no requests partition in {JOIN_TIMEOUT_S:g}s (more replicas than partitions?)")
            await asyncio.sleep(0.05)
    await warm_producer(producer, topics, ("assignments", "completions", "dead-letters"))
    warm_scorers()  # the compiled scorers, before the first decision rather than in it
    if core.health is not None:
        core.health.started_s = clock.now()  # silence counts from when the router listens
    mark_ready(f"router-{core.router_id}" if core.router_id else "router")
    if ready is not None:
        ready.set()
    committer = Committer(consumer, pub, COMMIT_EVERY_S, stats=stats)
    req_committer = Committer(req_consumer, pub, COMMIT_EVERY_S, stats=req_stats) if group else None

    def positions():
        return {tp: (core.requests_commit(o, tp.partition) if tp.topic == req_topic else o) for tp, o in seen.items()}

    def req_positions():
        owned = req_consumer.assignment()
        return {tp: core.requests_commit(o, tp.partition) for tp, o in req_seen.items() if tp in owned}

    pending: dict = {}  # group mode: source -> its fetch task, kept across iterations

    async def poll(wait: float) -> list:
        if not group:
            msgs, fetched = await fetch(consumer, pub, wait, stats)
            return [(msgs, fetched, seen)]
        for name, c, st in (("req", req_consumer, req_stats), ("side", consumer, stats)):
            if name not in pending:
                pending[name] = asyncio.ensure_future(fetch(c, pub, wait, st))
        done, _ = await asyncio.wait(list(pending.values()), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        out = []
        for name in [k for k, t in pending.items() if t in done]:
            msgs, fetched = pending.pop(name).result()
            if name == "req":  # records of a partition moved away meanwhile belong to its new owner
                owned = req_consumer.assignment()
                msgs = [m for m in msgs if TopicPartition(req_topic, m.partition) in owned]
                fetched = {tp: o for tp, o in fetched.items() if tp in owned}
            out.append((msgs, fetched, req_seen if name == "req" else seen))
        return out

    try:
        while not stop.is_set():
            wait = min(clock.wall_until(core.next_wake()), COMMIT_EVERY_S)
            if core.swap is not None and core.swap.loading:
                wait = min(wait, SWAP_POLL_S)  # install a loaded version promptly even when idle
            batches = await poll(wait)
            now = clock.now()
            for msgs, _, _ in batches:
                for m in msgs:
                    try:
                        if m.topic == "requests":
                            core.on_request(m.msg, m.offset, m.partition)
                        elif m.topic == "assignments":
                            if core.on_peer_assignment(m.msg, now):
                                rm.on_peer(m.msg, now)
                        elif m.topic == "completions":
                            core.on_completion(m.msg, now)
                        elif m.topic == "instance-status":
                            core.on_status(m.msg, now)
                        elif m.topic == "policy-updates":
                            if m.msg.kind == "profiles":
                                core.adopt_profiles(list(m.msg.profiles))
                            else:
                                core.swap.on_update(m.msg, now)
                    except Exception as e:  # no single message may stop the router: dead-letter it, move on
                        await pub.dead_letter(m.topic, protos.encode(m.msg),
                                              f"router could not process it: {e.__class__.__name__}: {e}",
                                              m.partition, m.offset)
            if core.swap is not None:
                for ev in core.swap.poll(now):
                    rm.policy_events.labels(ev.kind).inc()
                    await pub.send("policy-updates", ev)
            core.check_health(now)
            t_dec = time.perf_counter()
            decided = core.decide(now)
            rm.on_decisions(decided, time.perf_counter() - t_dec)
            await pub.send_many("assignments", [(a, a.instance, a.request.id.encode()) for a in decided])
            for topic, msg in core.take_outbox():  # fence notices, error completions
                if topic == "assignments":
                    await pub.send(topic, msg, partition=msg.instance, key=msg.request.id.encode())
                else:
                    await pub.send(topic, msg, key=msg.request_id.encode())
            for _, fetched, into in batches:
                into.update(fetched)
            committer.maybe(positions)  # assignments are acknowledged before their requests are committed
            committer.check()  # BrokerLost: exit non-zero rather than run on stuck
            if req_committer is not None:
                req_committer.maybe(req_positions)
                req_committer.check()
    finally:
        for t in pending.values():
            t.cancel()
        await committer.close(positions)
        if req_consumer is not None:
            await req_committer.close(req_positions)
            await bounded(stop_consumer(req_consumer), STOP_FLUSH_S, "leaving the router group")
        await bounded(stop_consumer(consumer), STOP_FLUSH_S, "stopping the consumer")
        await bounded(producer.stop(), STOP_FLUSH_S, "stopping the producer")
    return core


#: wall seconds of ``assignments`` a starting router reads back (``recent_assignment_ids``)
RECOVER_WINDOW_S = 120.0


async def recent_assignment_ids(bootstrap: str, topics: Topics, n_partitions: int,
                                window_s: float = RECOVER_WINDOW_S, timeout_s: float = 60.0) -> set[str]:
    """Ids of requests assigned in the last ``window_s`` wall seconds: the state a
    restarted router derives from the stream. ``requests`` is re-read from the
    last committed offset (at most ``COMMIT_EVERY_S`` plus the router queue
    behind), so a window of minutes covers every redelivery; the ids are
    remembered as routed, so no request is assigned twice across a restart."""
    import time

    got, _ = await read_back(bootstrap, topics, "assignments", range(n_partitions), since_unix=time.time() - window_s,
                             timeout_s=timeout_s, client_id="phaser-router-recover")
    return {a.request.id for a in got if not a.revoked}


def main(bootstrap: str, policy: str, n_instances: int, profiles: list[str], time_scale: float, seed: int,
         predictor: str, topics: Topics, swap: dict | None = None, policy_options: dict | None = None,
         heartbeat_s: float = 0.5, down_after_wall_s: float = DOWN_FLOOR_WALL_S, metrics_port: int | None = None,
         replica_id: str = "", routers: int = 1, feature_share: float = 1.0) -> None:
    """``swap``: keyword options of ``services.policy_swap.attach`` (store, checkpoint, canary...) or None.
    ``down_after_wall_s``: failover's wall-clock floor (``phaser.cluster.health``); 0 turns failover off."""
    from services.lifecycle import install_stop_signals

    core = build_core(policy, n_instances, profiles, seed, predictor, policy_options)
    core.router_id = replica_id
    core.feature_share = feature_share
    if down_after_wall_s > 0:
        core.health = Health(n_instances, down_after(heartbeat_s, time_scale, floor_wall_s=down_after_wall_s))
    if swap is not None:
        from services.policy_swap import attach

        attach(core, seed=seed, **swap)
    clock = StackClock(time_scale)
    from services.metrics import Metrics

    metrics = Metrics(f"router-{replica_id}" if replica_id else "router")
    metrics.serve(metrics_port)

    async def _run():
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_router(bootstrap, core, clock, topics, stop, metrics=metrics, routers=routers)

    asyncio.run(_run())
    who = f"router {replica_id}" if replica_id else "router"
    print(f"{who}: {core.routed} routed, {len(core.queue)} queued at exit, {core.duplicates} duplicate ids ignored",
          file=sys.stderr)
    if replica_id:
        mean = core.peer_lag_sum_s / core.peer_reads if core.peer_reads else 0.0
        print(f"{who}: {core.peer_assignments} peer decisions applied, read {mean:.3f} stack s after they were made "
              f"on average (max {core.peer_lag_max_s:.3f}), {core.peer_late} read after their completion, "
              f"{core.dropped} handed back on a rebalance", file=sys.stderr)
    if core.health is not None and (core.health.went_down or core.rerouted or core.failed):
        print(f"router: failover: {core.health.went_down} instance(s) went down, {core.health.came_back} came back, "
              f"{core.rerouted} re-routed, {core.diverted} decisions diverted, {core.failed} failed (status error)",
              file=sys.stderr)
    if core.swap is not None:
        print("router: requests per policy version: " + ", ".join(f"v{v}={n}" for v, n in sorted(core.swap.served_counts.items())),
              file=sys.stderr)
        core.swap.close()
