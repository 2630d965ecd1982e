"""``phaser trainer``: learn the routing policy online from the stream.

``TrainerCore`` is the functional core (time passed in, the store injected):
messages in → ``Joiner`` (exactly-once pairs) → ``TransitionBuilder`` (the
offline reward) → ``OnlineLearner`` (the offline update step) → every
``publish_every_updates`` updates or ``publish_every_s`` seconds, a new
checkpoint version in the store and a ``PolicyUpdate(kind="published")`` for
the routers, which canary it (``services.policy_swap``). The output-length
predictor learns from every completion (``LengthPredictor.update``) and is
saved inside each version's metadata, so it is versioned, checksummed and
rolled back together with the network it was trained alongside.

``run_trainer`` is the Kafka shell: all partitions of ``assignments`` plus
``completions`` and ``instance-status``, explicit assignment, group commits.
Ingest and learning share one loop, but learning per loop is capped
(``OnlineLearner.max_updates``), so a burst is ingested first and learnt from
over the next loops; ``stats()`` reports ingest rate and consumer lag (time
since the newest record read was produced, and offsets behind the high
watermark the broker reports — which lags on tansu, see ``services.broker``).

``--freeze`` keeps consuming and joining (stats stay live) but neither learns
nor publishes.

``--twin`` (``phaser.twin``) replaces the online gradient learner as what
publishes: every joined request enters the twin's window; every
``--twin-every-s`` wall seconds a child process fits the instances' time
scales, trains a candidate in the twin (warm-started from the incumbent when
it is a cross-family network) and judges it against the incumbent on held-out
replays; only a winner becomes a version (``kind=published``, the twin's
verdict in its metadata and reason), which the routers then canary. Every
other outcome — a loser, a poor fit, too small a window, a failed round — is a
log line with its reason and a count in
``phaser_trainer_twin_rounds_total{outcome}`` (``services.metrics.trainer``),
and nothing is published.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import Counter, deque
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from phaser.errors import PhaserError
from policy_trainer.joiner import Joiner
from policy_trainer.learner import OnlineLearner
from phaser.versions.store import CheckpointStore
from policy_trainer.transitions import TransitionBuilder
import protos
from protos.messages import Assignment, Completion, InstanceStatus, PolicyUpdate

log = logging.getLogger("phaser.trainer")

#: recent assignments whose majority (policy, version) is taken as what the routers serve
SERVED_WINDOW = 200
#: a fitted time scale this far (relative) from what the routers plan with is announced to them
ANNOUNCE_REL = 0.03


@dataclass
class TrainerCore:
    learner: OnlineLearner
    store: CheckpointStore
    joiner: Joiner = field(default_factory=Joiner)
    builder: TransitionBuilder | None = None
    predictor: object | None = None  # phaser.predictor.length.LengthPredictor
    publish_every_updates: int = 500
    publish_every_s: float = 30.0
    freeze: bool = False
    published: list[int] = field(default_factory=list)
    events: int = 0
    _updates_at_publish: int = 0
    _last_publish_wall: float | None = None
    _held: dict = field(default_factory=dict)  # request id -> (tp, offset) of its pending half
    twin: object | None = None  # phaser.twin.Twin (--twin): candidates trained and judged in the twin
    twin_every_s: float = 120.0
    twin_rounds: int = 0        # twin rounds finished (every outcome)
    twin_wins: int = 0          # of which published
    twin_outcomes: dict = field(default_factory=dict)  # outcome ("won", "lost", "fit", "window", "failed") -> rounds
    twin_last: str = ""         # the last round's reason
    twin_last_outcome: str = ""
    twin_last_gain_pct: float = float("nan")
    _next_twin_wall: float | None = None
    _twin_incumbent: dict | None = None  # the newest twin winner, once there is one
    _served: deque = field(default_factory=lambda: deque(maxlen=SERVED_WINDOW))  # (policy, version) of recent decisions
    announced: list | None = None  # the time scales the routers were last told to plan with

    def commit_positions(self, fetched: dict) -> dict:
        """Offsets safe to commit: per partition the oldest record whose half is still
        unjoined, else what was fetched. A restarted trainer re-reads those records and
        pairs them, instead of never seeing their partners' other halves again."""
        for rid in [r for r in self._held if not self.joiner.is_pending(r)]:  # expired, dropped
            del self._held[rid]
        out = dict(fetched)
        for tp, off in self._held.values():
            if tp in out and off < out[tp]:
                out[tp] = off
        return out

    def __post_init__(self) -> None:
        if self.publish_every_updates < 1 or self.publish_every_s <= 0:
            raise PhaserError("--publish-every-updates must be >= 1 and --publish-every-s > 0")
        if self.builder is None:
            self.builder = TransitionBuilder.for_config(self.learner.obs_dim, self.learner.cfg)
        self._updates_at_publish = self.learner.updates  # a resumed learner publishes after new updates only

    def on_message(self, msg, now_s: float, where: tuple | None = None) -> None:
        """``where``: (topic partition, offset) of the record, so ``commit_positions``
        never commits past a half that is still waiting for its partner."""
        self.events += 1
        if isinstance(msg, Assignment):
            self._served.append((msg.policy, int(msg.policy_version)))
            j = self.joiner.add_assignment(msg, now_s)
        elif isinstance(msg, Completion):
            if msg.status != "ok":  # rejected or failed: nothing was served, nothing to learn from
                self.joiner.drop(msg.request_id)
                return
            j = self.joiner.add_completion(msg, now_s)
        elif isinstance(msg, InstanceStatus):
            self.joiner.add_status(msg)
            return
        else:
            return
        if j is None:
            if where is not None and isinstance(msg, (Assignment, Completion)):
                rid = msg.request.id if isinstance(msg, Assignment) else msg.request_id
                if self.joiner.is_pending(rid) and rid not in self._held:
                    self._held[rid] = where
            return
        self._held.pop(j.request_id, None)
        if self.twin is not None:
            self.twin.observe(j.assignment.request, j.completion)
        self.builder.add(j)
        if self.predictor is not None:
            c = j.completion
            self.predictor.update(c.prompt_tokens, c.task, c.output_tokens)

    def step(self, now_s: float, wall_s: float) -> PolicyUpdate | None:
        """Expire stale halves, build settled transitions, learn, maybe publish."""
        if self._last_publish_wall is None:
            self._last_publish_wall = wall_s
        self.joiner.expire(now_s)
        batch = self.builder.ready(now_s)
        if self.freeze or self.twin is not None:  # with the twin, only its winners are published
            return None
        if batch is not None:
            self.learner.add(batch)
        self.learner.train()
        new = self.learner.updates - self._updates_at_publish
        if new <= 0:
            return None
        if new >= self.publish_every_updates or wall_s - self._last_publish_wall >= self.publish_every_s:
            return self.publish(now_s, wall_s)
        return None

    def publish(self, now_s: float, wall_s: float) -> PolicyUpdate:
        params, meta = self.learner.snapshot({"events": self.events, **{f"join_{k}": v for k, v in self.joiner.counters.as_dict().items()}})
        if self.predictor is not None:
            meta["predictor"] = self.predictor.to_dict()
        version, path, checksum = self.store.publish(params, meta)
        self.store.save_state(version, {**self.learner.state(), **self.builder.state()}, checksum)
        self._updates_at_publish = self.learner.updates
        self._last_publish_wall = wall_s
        self.published.append(version)
        s = meta["stats"]
        stats = {"updates": float(s["updates"]), "transitions": float(s["transitions"]),
                 "reward_mean": float(s["reward_mean"]), "parent_version": float(meta["parent_version"])}
        if s["loss"] is not None:
            stats["loss"] = float(s["loss"])
        log.info("published v%d (%d updates)", version, s["updates"])
        return PolicyUpdate(kind="published", version=version, path=str(path), checksum=checksum,
                            reason=f"online: {s['updates']} updates on {s['transitions']} transitions",
                            ts_s=max(0.0, now_s), stats=stats)

    # -- the twin (the shell runs ``twin_job()`` off the loop, then ``twin_publish``) --
    def twin_due(self, wall_s: float) -> bool:
        from phaser.twin import MIN_WINDOW

        if self.twin is None or self.freeze:
            return False
        if self._next_twin_wall is None:
            self._next_twin_wall = wall_s + self.twin_every_s
        if wall_s < self._next_twin_wall:
            return False
        self._next_twin_wall = wall_s + self.twin_every_s
        if len(self.twin) < MIN_WINDOW:  # no candidate trained on too few requests; counted, not run
            self._twin_outcome("window", f"only {len(self.twin)} requests in the window (need {MIN_WINDOW})")
            return False
        return True

    def _twin_outcome(self, outcome: str, reason: str, gain_pct: float = float("nan")) -> None:
        self.twin_rounds += 1
        self.twin_outcomes[outcome] = self.twin_outcomes.get(outcome, 0) + 1
        self.twin_last, self.twin_last_outcome, self.twin_last_gain_pct = reason, outcome, gain_pct
        log.info("twin round %s: %s", outcome, reason)

    def twin_failed(self, err: BaseException) -> None:
        self._twin_outcome("failed", f"{err.__class__.__name__}: {err}")

    def served(self) -> tuple[str, int] | None:
        """(policy, version) that decided most of the last ``SERVED_WINDOW`` assignments: the
        routers' incumbent (a canary serves a minority share)."""
        if not self._served:
            return None
        return Counter(self._served).most_common(1)[0][0]

    def twin_incumbent(self) -> dict:
        """What a candidate must beat: the policy the routers serve. A policy served without a
        store version (version 0: a heuristic, or a learned policy's shipped checkpoint) is
        rebuilt by name; a store version is loaded from the store; with neither known (no
        traffic yet, or a version this trainer cannot read), the newest twin winner, else the
        learner's own network."""
        from phaser.policies import available

        served = self.served()
        if served is not None:
            name, version = served
            if version == 0 and name in available():
                return {"policy": name}
            if version > 0:
                if self._twin_incumbent is not None and self._twin_incumbent.get("store_version") == version:
                    return self._twin_incumbent
                try:
                    ck = self.store.load(version)
                    return {"params": ck.params, "arch": ck.arch, "hidden": list(ck.metadata["config"]["hidden"]),
                            "version": int(ck.metadata["feature_spec"]["version"]), "store_version": version}
                except (PhaserError, KeyError, TypeError, ValueError) as e:
                    # not a version of this store (a router serving a shipped checkpoint without
                    # --store reports that checkpoint's own version): the policy by name
                    log.info("twin: v%d is not in this store (%s); the incumbent is %s by name", version, e, name)
                    if name in available():
                        return {"policy": name}
        if self._twin_incumbent is not None:
            return self._twin_incumbent
        params, _meta = self.learner.snapshot({})
        return {"params": params, "arch": self.learner.cfg.arch, "hidden": list(self.learner.cfg.hidden),
                "version": self.learner.spec.version}

    def twin_job(self) -> tuple:
        """What a twin round needs, picklable (the window is copied: ingestion goes on)."""
        import copy

        return copy.deepcopy(self.twin), self.twin_incumbent(), self.twin_rounds

    def twin_publish(self, res, now_s: float) -> PolicyUpdate | None:
        from phaser.rl.families import SPEC_VERSION, StudentConfig, checkpoint_meta

        self.twin.scales = list(res.scales)  # the next fit starts from what this one found
        self.twin.fit_errors = list(res.detail.get("fit_errors", self.twin.fit_errors))
        self._twin_outcome(res.outcome, res.reason, res.gain_pct if res.held_out else float("nan"))
        if not res.wins:
            return None
        self.twin_wins += 1
        hidden = StudentConfig().hidden  # what phaser.twin.train_candidate trains
        meta = checkpoint_meta(
            self.twin.n, hidden, parent_version=self.learner.parent, source="twin",
            twin={"reason": res.reason, "gain_pct": res.gain_pct, "wins_on": res.wins_on, "held_out": res.held_out,
                  "scales": res.scales, "profiles": list(self.twin.profiles()), **res.detail},
            stats={"updates": 0, "transitions": len(self.twin), "reward_mean": 0.0, "loss": None})
        if self.predictor is not None:
            meta["predictor"] = self.predictor.to_dict()
        version, path, checksum = self.store.publish(res.params, meta)
        self.published.append(version)
        self._twin_incumbent = {"params": res.params, "arch": "shared", "hidden": list(hidden), "version": SPEC_VERSION,
                                "store_version": version}
        self.learner.parent = version
        log.info("published v%d from the twin", version)
        return PolicyUpdate(kind="published", version=version, path=str(path), checksum=checksum,
                            reason=f"twin: {res.reason}"[:500], ts_s=max(0.0, now_s),
                            stats={"twin_gain_pct": float(res.gain_pct), "held_out": float(res.held_out)})

    def twin_profiles_update(self, res, now_s: float) -> PolicyUpdate | None:
        """After a round whose fit was good (judged or not, the fit held): tell the routers to plan
        with the fitted hardware when any instance's scale moved more than ``ANNOUNCE_REL`` from
        what they were last told (at first: the nominal profiles, scale 1)."""
        if res.outcome not in ("won", "lost"):
            return None
        prev = self.announced or [1.0] * self.twin.n
        if all(abs(k - p) <= ANNOUNCE_REL * p for k, p in zip(res.scales, prev)):
            return None
        # within ANNOUNCE_REL of nominal is nominal; else 3 significant digits (the fit's noise is larger)
        scales = [1.0 if abs(k - 1.0) <= ANNOUNCE_REL else float(f"{k:.3g}") for k in res.scales]
        self.announced = scales
        names = list(self.twin.profiles(scales))
        self.twin.told = tuple(names)
        log.info("twin: routers told to plan with %s", ", ".join(names))
        return PolicyUpdate(kind="profiles", version=0, profiles=names, ts_s=max(0.0, now_s),
                            reason=f"fitted from {len(self.twin)} requests: scales "
                                   + ", ".join(f"{k:.3g}" for k in res.scales))

    def stats(self) -> dict[str, float]:
        out = {"events": float(self.events), "transitions": float(self.learner.transitions),
               "updates": float(self.learner.updates), "pending_decisions": float(self.builder.pending),
               "pending_joins": float(self.joiner.pending), "published": float(len(self.published))}
        out.update({f"join_{k}": v for k, v in self.joiner.counters.as_dict().items()})
        if self.twin is not None:
            out.update(twin_window=float(len(self.twin)), twin_rounds=float(self.twin_rounds),
                       twin_wins=float(self.twin_wins),
                       **{f"twin_outcome_{k}": float(v) for k, v in self.twin_outcomes.items()})
        return out


def build_core(store_dir: str, n_instances: int, checkpoint: str | None, seed: int, *, publish_every_updates: int,
               publish_every_s: float, freeze: bool, settle_s: float) -> TrainerCore:
    """Start from ``--checkpoint``, else the store's newest usable version (a restarted
    trainer resumes its own lineage, with the learner state saved next to that
    version when it is readable: replay, optimiser, pending decisions), else
    from scratch."""
    from phaser.predictor.length import LengthPredictor
    from phaser.rl.checkpoint import check_compatible, load_checkpoint

    store = CheckpointStore(store_dir)
    ckpt = None
    if checkpoint:
        ckpt = load_checkpoint(checkpoint)
        check_compatible(ckpt, n_instances)  # an explicit --checkpoint that is unusable is refused (exit 2)
    else:
        def _load(v: int):
            c = store.load(v)
            check_compatible(c, n_instances)
            return c

        # resume the learner where it left off: its newest version (what the router serves,
        # the current one, may be older after a rollback, but it is not the learner's state)
        version, ckpt, notes = store.usable_current(_load, newest_first=True)
        for line in notes:  # a corrupt or missing current version must not stop the trainer: say so, fall back
            print(f"trainer: {line}", file=sys.stderr)
        if notes:
            print(f"trainer: starting from v{version}" if ckpt is not None else "trainer: no usable version; learning from scratch",
                  file=sys.stderr)
    learner = OnlineLearner(n_instances, ckpt, seed=seed)
    predictor = LengthPredictor.from_dict(ckpt.metadata["predictor"]) if ckpt and "predictor" in ckpt.metadata else LengthPredictor()
    builder = TransitionBuilder.for_config(learner.obs_dim, learner.cfg, settle_s=settle_s)
    if ckpt is not None and not checkpoint:
        try:  # continue the same optimisation: replay, Adam, target net, pending decisions
            state = store.load_state(version, ckpt.checksum)
            learner.restore(state)
            builder.restore(state)
            print(f"trainer: resumed v{version} with {learner.replay.size} replayed transitions, "
                  f"{learner.updates} updates, {builder.pending} pending decisions", file=sys.stderr)
        except (PhaserError, ValueError, KeyError) as e:
            learner = OnlineLearner(n_instances, ckpt, seed=seed)  # nothing half-restored
            builder = TransitionBuilder.for_config(learner.obs_dim, learner.cfg, settle_s=settle_s)
            print(f"trainer: {e}; resuming v{version}'s weights with an empty replay and a fresh optimiser",
                  file=sys.stderr)
    return TrainerCore(learner, store, builder=builder, predictor=predictor, publish_every_updates=publish_every_updates,
                       publish_every_s=publish_every_s, freeze=freeze)


async def run_trainer(bootstrap: str, core: TrainerCore, clock, n_instances: int, topics=None,
                      stop: asyncio.Event | None = None, report_every_s: float = 10.0,
                      on_report=None, metrics=None) -> TrainerCore:
    """The Kafka loop; runs until ``stop`` is set. ``metrics``: a ``services.metrics.Metrics``."""
    from services.metrics import ConsumerStats, Metrics
    from services.metrics.trainer import trainer_metrics

    from aiokafka import TopicPartition

    from services.kafka import STOP_FLUSH_S, Publisher, Topics, bounded, commit, ensure_topics, fetch, open_producer, Pace, start_consumer, stop_consumer

    topics = topics or Topics()
    stop = stop or asyncio.Event()
    await ensure_topics(bootstrap, n_instances, topics)
    producer, idempotent = await open_producer(bootstrap, client_id="phaser-trainer")
    pub = Publisher(producer, topics, source="trainer", clock_now=clock.now, idempotent=idempotent)
    metrics = metrics or Metrics("trainer")
    trainer_metrics(metrics, core)
    pub.metrics = metrics
    parts = [(topics.name("assignments"), p) for p in range(n_instances)]
    parts += [(topics.name("completions"), 0), (topics.name("instance-status"), 0)]
    consumer = await start_consumer(bootstrap, parts, group_id=topics.prefix + "phaser-trainer", client_id="phaser-trainer",
                                    pace=Pace.paced())
    stats = ConsumerStats(metrics, "phaser-trainer", topics, consumer)
    await stats.started()
    tps = [TopicPartition(t, p) for t, p in parts]
    positions: dict = {}
    newest_ts_ms = 0
    next_commit = next_report = time.monotonic() + 1.0
    t0, ev0 = time.monotonic(), 0
    pool, twin_fut = None, None
    if core.twin is not None:  # a child process: training must not starve ingestion (the GIL)
        pool = _twin_pool()
    try:
        while not stop.is_set():
            msgs, pos = await fetch(consumer, pub, 0.1, stats)
            now = clock.now()
            for m in msgs:
                try:
                    core.on_message(m.msg, now, (TopicPartition(topics.name(m.topic), m.partition), m.offset))
                except Exception as e:  # no single message may stop the trainer
                    await pub.dead_letter(m.topic, protos.encode(m.msg),
                                          f"trainer could not process it: {e.__class__.__name__}: {e}",
                                          m.partition, m.offset)
                newest_ts_ms = max(newest_ts_ms, m.timestamp_ms)
            positions.update(pos)
            upd = core.step(now, time.monotonic())
            if upd is not None:
                await pub.send("policy-updates", upd)
            if pool is not None:
                if twin_fut is None and core.twin_due(time.monotonic()):
                    twin_fut = asyncio.wrap_future(pool.submit(twin_round, *core.twin_job()))
                elif twin_fut is not None and twin_fut.done():
                    upds = []
                    try:
                        res = twin_fut.result()
                        upds = [core.twin_profiles_update(res, clock.now()), core.twin_publish(res, clock.now())]
                    except Exception as e:  # a failed round is reported; the next one is due later
                        log.warning("twin round failed: %s: %s", e.__class__.__name__, e)
                        core.twin_failed(e)
                        if isinstance(e, BrokenProcessPool) and not stop.is_set():  # its child died: a new one
                            pool.shutdown(wait=False, cancel_futures=True)
                            pool = _twin_pool()
                    twin_fut = None
                    for upd in upds:
                        if upd is not None:
                            await pub.send("policy-updates", upd)
            mono = time.monotonic()
            if positions and mono >= next_commit:
                await commit(consumer, core.commit_positions(positions), stats)
                next_commit = mono + 1.0
            if mono >= next_report:
                lag = sum(max(0, (consumer.highwater(tp) or 0) - positions.get(tp, 0)) for tp in tps)
                rate = (core.events - ev0) / max(1e-9, mono - t0)
                st = dict(core.stats(), ingest_events_per_s=rate, lag_offsets=float(lag),
                          lag_s=max(0.0, time.time() - newest_ts_ms / 1000) if newest_ts_ms else 0.0)
                if on_report is not None:
                    on_report(st)
                else:
                    print("trainer: " + " ".join(f"{k}={v:.4g}" for k, v in st.items()), file=sys.stderr, flush=True)
                t0, ev0, next_report = mono, core.events, mono + report_every_s
    finally:
        async def _last():
            await pub.flush()
            if positions:
                await commit(consumer, core.commit_positions(positions), stats)

        if pool is not None:  # a round in progress is abandoned, its child stopped
            if twin_fut is not None:  # its BrokenProcessPool is expected, not an error to log
                twin_fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.kill()  # it ignores SIGTERM (_twin_child_init)
            pool.shutdown(wait=False, cancel_futures=True)
        await bounded(_last(), STOP_FLUSH_S, "the trainer's last flush and commit")
        await bounded(stop_consumer(consumer), STOP_FLUSH_S, "stopping the consumer")
        await bounded(producer.stop(), STOP_FLUSH_S, "stopping the producer")
    return core


def _twin_child_init() -> None:
    """The twin's child ignores the terminal's and the stack's stop signals (sent to the whole
    process group): the trainer stops it itself, so a stop is not a failed round."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _twin_pool():
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_twin_child_init)


def twin_round(twin, incumbent: dict, k: int):
    """One twin round in the child process: the candidate vs the incumbent (``TrainerCore.twin_incumbent``:
    a heuristic by name, or a network), in the twin; warm-started from the incumbent when it is a
    cross-family network."""
    from phaser.policies import make_policy
    from phaser.rl.features import FeatureSpec
    from phaser.rl.policy import RLPolicy
    from phaser.twin import train_candidate

    label = incumbent.get("policy") or f"v{incumbent.get('store_version', 0)}"
    if "policy" in incumbent:
        res = train_candidate(twin, lambda n, s: make_policy(incumbent["policy"], n, s), seed=k)
        res.detail["incumbent"] = label
        return res

    def inc(n, s):
        return RLPolicy(incumbent["params"], incumbent["arch"], len(incumbent["hidden"]),
                        FeatureSpec(n, incumbent["version"]), seed=s, allow_wait=False)

    warm = incumbent["params"] if incumbent["arch"] == "shared" and incumbent["version"] == 3 else None
    res = train_candidate(twin, inc, seed=k, incumbent_params=warm)
    res.detail["incumbent"] = label
    return res


def main(bootstrap: str, store: str, n_instances: int, checkpoint: str | None, seed: int, time_scale: float,
         topics, publish_every_updates: int, publish_every_s: float, freeze: bool, settle_s: float,
         metrics_port: int | None = None, twin_profiles: list[str] | None = None, twin_every_s: float = 120.0,
         twin_window: int = 2000) -> None:
    from services.clock import StackClock
    from services.lifecycle import install_stop_signals

    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)  # the trainer's own progress lines; libraries (aiokafka, jax) only warn
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.ERROR)  # "no TPU" probe noise on CPU hosts
    clock = StackClock(time_scale)
    core = build_core(store, n_instances, checkpoint, seed, publish_every_updates=publish_every_updates,
                      publish_every_s=publish_every_s, freeze=freeze, settle_s=settle_s)
    if twin_profiles:
        from phaser.twin import Twin

        names = twin_profiles * n_instances if len(twin_profiles) == 1 else twin_profiles
        if len(names) != n_instances:
            raise PhaserError(f"--twin-profile lists {len(names)} profiles for {n_instances} instances; give one or one per instance")
        core.twin, core.twin_every_s = Twin(tuple(names), window=twin_window), twin_every_s

    from services.metrics import Metrics

    metrics = Metrics("trainer")
    metrics.serve(metrics_port)

    async def _run():
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_trainer(bootstrap, core, clock, n_instances, topics, stop, metrics=metrics)

    asyncio.run(_run())
    st = core.stats()
    print(f"trainer: {int(st['events'])} events, {int(st['transitions'])} transitions, {int(st['updates'])} updates, "
          f"published {', '.join(f'v{v}' for v in core.published) or 'nothing'}", file=sys.stderr)
