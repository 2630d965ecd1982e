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
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections import deque
from dataclasses import dataclass, field

import protos
from phaser.errors import PhaserError
from phaser.types import Job
from services.clock import StackClock
from services.lifecycle import mark_ready
from services.kafka import (STOP_FLUSH_S, Committer, Publisher, bounded, Topics, ensure_topics, fetch, open_producer, start_consumer,
                            stop_consumer, warm_producer)

#: request ids remembered for de-duplication (see module docstring)
DEDUPE_WINDOW = 1_000_000
#: the paper's router tick (stack seconds): the shortest decode iteration
ROUTER_TICK_S = 0.02
#: wall seconds between offset commits (``services.kafka.Committer``)
COMMIT_EVERY_S = 0.5
#: wall seconds between checks for a finished background policy load (hot swap)
SWAP_POLL_S = 0.01


@dataclass
class RouterCore:
    policy: object
    view: object  # phaser.cluster.view.ClusterView
    predictor: object  # phaser.predictor API: .predict(request) -> (expected tokens, bucket), optional .update
    tick_s: float = ROUTER_TICK_S
    queue: deque = field(default_factory=deque)  # of (Request, Job, offset in `requests` or -1)
    seen: dict[str, None] = field(default_factory=dict)  # insertion-ordered: oldest first
    duplicates: int = 0
    routed: int = 0
    not_served: int = 0  # completions with status rejected/error
    #: ``services.policy_swap.PolicySwap`` when versions are hot-swapped (``--store``):
    #: it decides instead of ``policy`` (canary split, guard, exploration)
    swap: object | None = None
    #: ``phaser.rl.features.Encoder``: encodes the state when the policy gives no features
    encoder: object | None = None
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
        self.queue.append((req, Job.from_request(req, tokens, bucket), offset))
        return True

    def on_completion(self, c: protos.Completion, t: float) -> None:
        if 0 <= c.instance < len(self.view.instances):
            self.view.on_complete(c.request_id, c.instance, t)  # a rejected request frees the view too
        if c.status != "ok":
            self.not_served += 1
            return
        if self.swap is not None:
            self.swap.on_completion(c)
        update = getattr(self.predictor, "update", None)
        if update is not None:  # learn from finished requests (their true length is public now)
            update(c.prompt_tokens, c.task, c.output_tokens)

    def on_status(self, s: protos.InstanceStatus, t: float) -> None:
        self.view.on_status(s, t)

    def decide(self, now: float) -> list[protos.Assignment]:
        """Route from the head of the queue until it is empty or the policy
        waits; a waiting head is re-asked only from ``now + tick`` on."""
        out: list[protos.Assignment] = []
        if not self.queue or now < self._retry_at:
            return out
        self.view.advance_to(now)
        n = len(self.view.instances)
        while self.queue:
            req, job, _ = self.queue[0]
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
            if i is None:
                self._retry_at = now + self.tick_s
                break
            if not (isinstance(i, int) and 0 <= i < n):
                raise RuntimeError(f"policy {name} returned instance {i!r} with {n} instances")
            self.queue.popleft()
            self.view.on_assign(job, i, now)
            out.append(protos.Assignment(
                request=req, instance=i, policy=name, policy_version=version,
                decided_s=now, router_wait_s=max(0.0, now - req.arrival_s), predicted_tokens=job.predicted_tokens,
                predicted_bucket=job.predicted_bucket, features=None if feats is None else [float(x) for x in feats],
                action=action,
            ))
            self.routed += 1
        self.view.router_queue_len = len(self.queue)
        return out

    def next_wake(self) -> float:
        return self._retry_at if self.queue else math.inf

    def requests_commit(self, next_offset: int) -> int:
        """Offset of ``requests`` safe to commit: the oldest still-queued request's,
        else ``next_offset`` (everything read was routed)."""
        if self.queue and self.queue[0][2] >= 0:
            return self.queue[0][2]
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
                     stop: asyncio.Event | None = None, ready: asyncio.Event | None = None) -> RouterCore:
    """The Kafka loop; runs until ``stop`` is set (``ready`` is set once it is serving)."""
    stop = stop or asyncio.Event()
    n = len(core.view.instances)
    await ensure_topics(bootstrap, n, topics)
    producer, idempotent = await open_producer(bootstrap, client_id="phaser-router")
    pub = Publisher(producer, topics, source="router", clock_now=clock.now, idempotent=idempotent)
    inputs = ("requests", "completions", "instance-status") + (("policy-updates",) if core.swap is not None else ())
    consumer = await start_consumer(
        bootstrap, [(topics.name(t), 0) for t in inputs],
        group_id=topics.prefix + "phaser-router", client_id="phaser-router")
    req_topic = topics.name("requests")
    seen: dict = {}
    await warm_producer(producer, topics, ("assignments", "dead-letters"))
    mark_ready("router")
    if ready is not None:
        ready.set()
    committer = Committer(consumer, pub, COMMIT_EVERY_S)

    def positions():
        return {tp: (core.requests_commit(o) if tp.topic == req_topic else o) for tp, o in seen.items()}

    try:
        while not stop.is_set():
            wait = min(clock.wall_until(core.next_wake()), COMMIT_EVERY_S)
            if core.swap is not None and core.swap.loading:
                wait = min(wait, SWAP_POLL_S)  # install a loaded version promptly even when idle
            msgs, fetched = await fetch(consumer, pub, wait)
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
                        core.swap.on_update(m.msg, now)
                except Exception as e:  # no single message may stop the router: dead-letter it, move on
                    await pub.dead_letter(m.topic, protos.encode(m.msg),
                                          f"router could not process it: {e.__class__.__name__}: {e}",
                                          m.partition, m.offset)
            if core.swap is not None:
                for ev in core.swap.poll(now):
                    await pub.send("policy-updates", ev)
            for a in core.decide(now):
                await pub.send("assignments", a, partition=a.instance, key=a.request.id.encode())
            seen.update(fetched)
            committer.maybe(positions)  # assignments are acknowledged before their requests are committed
            committer.check()  # BrokerLost: exit non-zero rather than run on stuck
    finally:
        await committer.close(positions)
        await bounded(stop_consumer(consumer), STOP_FLUSH_S, "stopping the consumer")
        await bounded(producer.stop(), STOP_FLUSH_S, "stopping the producer")
    return core


def main(bootstrap: str, policy: str, n_instances: int, profiles: list[str], time_scale: float, seed: int,
         predictor: str, topics: Topics, swap: dict | None = None, policy_options: dict | None = None) -> None:
    """``swap``: keyword options of ``services.policy_swap.attach`` (store, checkpoint, canary...) or None."""
    from services.lifecycle import install_stop_signals

    core = build_core(policy, n_instances, profiles, seed, predictor, policy_options)
    if swap is not None:
        from services.policy_swap import attach

        attach(core, seed=seed, **swap)
    clock = StackClock(time_scale)

    async def _run():
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_router(bootstrap, core, clock, topics, stop)

    asyncio.run(_run())
    print(f"router: {core.routed} routed, {len(core.queue)} queued at exit, {core.duplicates} duplicate ids ignored",
          file=sys.stderr)
    if core.swap is not None:
        print("router: requests per policy version: " + ", ".join(f"v{v}={n}" for v, n in sorted(core.swap.served_counts.items())),
              file=sys.stderr)
        core.swap.close()
