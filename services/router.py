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
from collections import deque
from dataclasses import dataclass, field

import protos
from phaser.cluster.health import DOWN_FLOOR_WALL_S, Health, down_after
from phaser.errors import PhaserError
from phaser.policies._select import RotatingArg
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
    queue: deque = field(default_factory=deque)  # of (Request, Job, offset in `requests` or -1, epoch, attempts)
    seen: dict[str, None] = field(default_factory=dict)  # insertion-ordered: oldest first
    duplicates: int = 0
    routed: int = 0
    not_served: int = 0  # completions with status rejected/error
    #: ``services.policy_swap.PolicySwap`` when versions are hot-swapped (``--store``):
    #: it decides instead of ``policy`` (canary split, guard, exploration)
    swap: object | None = None
    #: ``phaser.rl.features.Encoder``: encodes the state when the policy gives no features
    encoder: object | None = None
    #: ``phaser.cluster.health.Health``; None = every instance always live (no failover)
    health: Health | None = None
    max_attempts: int = MAX_ATTEMPTS
    inflight: dict[str, _Flight] = field(default_factory=dict)
    rerouted: int = 0   # re-routings after a failover
    diverted: int = 0   # decisions moved off a down instance
    failed: int = 0     # requests ended with status error
    stale_answers: int = 0  # completions of a copy that had been re-routed
    waits: int = 0  # times the head of the queue was held back (policy wait, no live instance)
    _outbox: list = field(default_factory=list)  # fence notices and error completions to publish
    _divert: RotatingArg = field(default_factory=RotatingArg)
    _retry_at: float = -math.inf

    def on_request(self, req: protos.Request, offset: int = -1) -> bool:
        """Queue a request; False if its id was already seen (ignored)."""
        if req.id in self.seen:
            self.duplicates += 1
            return False
        self.seen[req.id] = None
        if len(self.seen) > DEDUPE_WINDOW:
            del self.seen[next(iter(self.seen))]
        tokens, bucket = self.predictor.predict(req)
        self.queue.append((req, Job.from_request(req, tokens, bucket), offset, 0, 0))
        return True

    def mark_routed(self, rid: str) -> None:
        """A request a previous router incarnation already assigned (read back at start)."""
        self.seen[rid] = None
        if len(self.seen) > DEDUPE_WINDOW:
            del self.seen[next(iter(self.seen))]

    def on_completion(self, c: protos.Completion, t: float) -> None:
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
        if self.health is not None and self.health.on_status(s.instance, s.health == "ok", s.reason, t) == "down":
            self._fail_over(s.instance, t)

    # ------------------------------------------------------------- failover
    def _notice(self, f: _Flight, epoch: int, t: float) -> protos.Assignment:
        return protos.Assignment(
            request=f.req, instance=f.instance, policy="failover", policy_version=0, decided_s=t,
            router_wait_s=0.0, predicted_tokens=f.job.predicted_tokens, predicted_bucket=f.job.predicted_bucket,
            action=-1, epoch=min(epoch, 1_000), revoked=True)

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
                back.append((f.req, f.job, -1, f.epoch + 1, f.attempts))
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
            req, job, _, epoch, attempts = self.queue[0]
            self.view.router_queue_len = len(self.queue)
            if self.swap is not None:
                d = self.swap.decide(job, self.view, now)
                i, name, version, feats, action = d.instance, d.policy, d.version, d.features, d.action
            else:
                i = self.policy.decide(job, self.view)
                name, version = self.policy.name, int(self.policy.version)
                feats = getattr(self.policy, "last_features", None)
                if feats is None and i is not None and self.encoder is not None:
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
                action=action, epoch=epoch,
            ))
            self.routed += 1
        self.view.router_queue_len = len(self.queue)
        return out

    def next_wake(self) -> float:
        return self._retry_at if self.queue else math.inf

    def requests_commit(self, next_offset: int) -> int:
        """Offset of ``requests`` safe to commit: the oldest still-queued request's,
        else ``next_offset`` (everything read was routed)."""
        for q in self.queue:  # re-routed requests (offset -1) sit ahead of the fresh ones
            if q[2] >= 0:
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
                     metrics=None) -> RouterCore:
    """The Kafka loop; runs until ``stop`` is set (``ready`` is set once it is serving).
    ``metrics``: a ``services.metrics.Metrics`` to export to (``services.metrics.router``)."""
    import time

    from services.metrics import ConsumerStats, Metrics
    from services.metrics.router import RouterMetrics

    stop = stop or asyncio.Event()
    metrics = metrics or Metrics("router")
    rm = RouterMetrics(metrics, core, clock)
    n = len(core.view.instances)
    await ensure_topics(bootstrap, n, topics)
    producer, idempotent = await open_producer(bootstrap, client_id="phaser-router")
    pub = Publisher(producer, topics, source="router", clock_now=clock.now, idempotent=idempotent)
    pub.metrics = metrics
    inputs = ("requests", "completions", "instance-status") + (("policy-updates",) if core.swap is not None else ())
    consumer = await start_consumer(
        bootstrap, [(topics.name(t), 0) for t in inputs],
        group_id=topics.prefix + "phaser-router", client_id="phaser-router")
    stats = ConsumerStats(metrics, "phaser-router", topics, consumer)
    await stats.started()
    req_topic = topics.name("requests")
    for rid in await recent_assignment_ids(bootstrap, topics, n):  # a restarted router must not route them again
        core.mark_routed(rid)
    seen: dict = {}
    await warm_producer(producer, topics, ("assignments", "completions", "dead-letters"))
    if core.health is not None:
        core.health.started_s = clock.now()  # silence counts from when the router listens
    mark_ready("router")
    if ready is not None:
        ready.set()
    committer = Committer(consumer, pub, COMMIT_EVERY_S, stats=stats)

    def positions():
        return {tp: (core.requests_commit(o) if tp.topic == req_topic else o) for tp, o in seen.items()}

    try:
        while not stop.is_set():
            wait = min(clock.wall_until(core.next_wake()), COMMIT_EVERY_S)
            if core.swap is not None and core.swap.loading:
                wait = min(wait, SWAP_POLL_S)  # install a loaded version promptly even when idle
            msgs, fetched = await fetch(consumer, pub, wait, stats)
            now = clock.now()
            for m in msgs:
                try:
                    if m.topic == "requests":
                        core.on_request(m.msg, m.offset)
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
            for a in decided:
                await pub.send("assignments", a, partition=a.instance, key=a.request.id.encode())
            for topic, msg in core.take_outbox():  # fence notices, error completions
                if topic == "assignments":
                    await pub.send(topic, msg, partition=msg.instance, key=msg.request.id.encode())
                else:
                    await pub.send(topic, msg, key=msg.request_id.encode())
            seen.update(fetched)
            committer.maybe(positions)  # assignments are acknowledged before their requests are committed
            committer.check()  # BrokerLost: exit non-zero rather than run on stuck
    finally:
        await committer.close(positions)
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
         heartbeat_s: float = 0.5, down_after_wall_s: float = DOWN_FLOOR_WALL_S, metrics_port: int | None = None) -> None:
    """``swap``: keyword options of ``services.policy_swap.attach`` (store, checkpoint, canary...) or None.
    ``down_after_wall_s``: failover's wall-clock floor (``phaser.cluster.health``); 0 turns failover off."""
    from services.lifecycle import install_stop_signals

    core = build_core(policy, n_instances, profiles, seed, predictor, policy_options)
    if down_after_wall_s > 0:
        core.health = Health(n_instances, down_after(heartbeat_s, time_scale, floor_wall_s=down_after_wall_s))
    if swap is not None:
        from services.policy_swap import attach

        attach(core, seed=seed, **swap)
    clock = StackClock(time_scale)
    from services.metrics import Metrics

    metrics = Metrics("router")
    metrics.serve(metrics_port)

    async def _run():
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_router(bootstrap, core, clock, topics, stop, metrics=metrics)

    asyncio.run(_run())
    print(f"router: {core.routed} routed, {len(core.queue)} queued at exit, {core.duplicates} duplicate ids ignored",
          file=sys.stderr)
    if core.health is not None and (core.health.went_down or core.rerouted or core.failed):
        print(f"router: failover: {core.health.went_down} instance(s) went down, {core.health.came_back} came back, "
              f"{core.rerouted} re-routed, {core.diverted} decisions diverted, {core.failed} failed (status error)",
              file=sys.stderr)
    if core.swap is not None:
        print("router: requests per policy version: " + ", ".join(f"v{v}={n}" for v, n in sorted(core.swap.served_counts.items())),
              file=sys.stderr)
        core.swap.close()
