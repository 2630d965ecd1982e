"""``phaser up``: the whole stack in one command.

Starts a broker (unless ``--bootstrap``: the embedded tansu, or with ``--broker kafka``
a real Apache Kafka), creates the topics, starts
the router, the workers, the trainer (when the ``trainer`` subcommand exists)
and the monitor as separate processes, waits until each says it is ready,
drives the load with ``load_generator.publisher``, collects ``completions`` until
every request came back or nothing arrived for ``drain_timeout_s`` wall
seconds, stops every child, and returns the summary (``services.summary``).

Decisions:

* The embedded broker listens on a free port unless ``--port`` is given, so
  ``phaser up`` never collides with a broker (or a previous run) on 9092.
* With ``--bootstrap`` (a shared, persistent Kafka) and no ``--topic-prefix``,
  the run gets a unique prefix ``up-<8 hex>-`` so an earlier run's records
  cannot be mistaken for this one's.
* Workers: ``INSTANCES_PER_WORKER`` instances per process (16: 64 instances =
  4 processes on 2 cores, leaving the cores to the engines, not to idle
  interpreters); ``--workers`` overrides.
* Children are started as ``python -m phaser.cli.main <subcommand> ...`` with
  the same interpreter, so they use the same installation as ``phaser up``.
* The load is published only after every child is ready (see
  ``services.lifecycle``), so start-up time never shows up as router wait.
* ``--policy rl`` runs the online-learning loop (issue 7): the router serves
  the checkpoint store's current version with hot swap and canary
  (``--store``), falling back to ``--start-policy`` (default ``ONLINE_FALLBACK``) until a version is
  promoted, and the trainer learns from the stream and publishes versions.
  ``--checkpoint`` seeds the store (imported as the current version);
  without it the loop starts from scratch.
* The trainer runs by default with any policy (``--no-trainer`` to skip): the
  router records the RL features of every decision, so the trainer learns
  off-policy from heuristic traffic too and publishes versions to the store;
  only ``--policy rl`` serves them.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from phaser.errors import PhaserError
from services.kafka import Topics, ensure_topics, fetch, make_producer, start_consumer, stop_consumer, Publisher
from services.clock import StackClock
from services.lifecycle import Children
from services.summary import Tally

INSTANCES_PER_WORKER = 16
READY_TIMEOUT_S = 60.0
#: children that are not on the request path: if they die the run goes on
OFF_PATH = ("monitor", "trainer")
#: the policy that runs the online-learning loop, and what the router serves until
#: the store has a current version (the baseline online learning must beat)
ONLINE_POLICY = "rl"
ONLINE_FALLBACK = "round-robin"


@dataclass
class UpConfig:
    requests: int = 1000
    workload: str = "paper-mix"
    rate: float | None = None
    seed: int = 0
    instances: int = 4
    workers: int | None = None
    profile: str = "v100-llama2-7b"
    policy: str = "round-robin"
    predictor: str = "online"
    chunked_prefill: bool = False
    heartbeat_s: float = 0.5
    time_scale: float = 10.0
    bootstrap: str | None = None
    #: the broker ``phaser up`` starts when no ``bootstrap`` is given: ``tansu`` (embedded, the
    #: default) or ``kafka`` (a real single-node Apache Kafka, ``services.apache_kafka``: needs Java)
    broker: str = "tansu"
    port: int | None = None
    topic_prefix: str | None = None
    drain_timeout_s: float = 30.0
    monitor: bool = True
    trainer: bool = True  # learns from any policy's traffic; with --policy rl its versions are served
    checkpoints: str = ""  # trainer's checkpoint store; "" = a temporary folder of this run
    checkpoint: str | None = None  # with --policy rl: seed the store with this checkpoint
    plot: str | None = None  # PNG of served E2E over time per policy version
    monitor_interval_s: float = 5.0
    backend: str = "sim"  # or "openai": real engines at `endpoints`, one per instance
    endpoints: tuple[str, ...] = ()
    engine: str | None = None  # "llama.cpp": start local engines first (services.engines.llamacpp)
    engine_slots: int = 4
    engine_ctx_per_slot: int = 2048
    #: Prometheus /metrics for every service: None = off, 0 = free ports, N = N (the load generator,
    #: in this process), N+1, N+2, ... for the children in ``child_commands`` order
    metrics_port: int | None = None
    metrics_sd: str | None = None  # write a Prometheus file_sd JSON of the targets here
    linger_s: float = 0.0  # keep the stack up this long after the load (to scrape or inspect it)
    load_delay_s: float = 0.0  # wall seconds between "stack ready" and the first request (let Prometheus find the targets)
    start_policy: str = ONLINE_FALLBACK  # with --policy rl: what the router serves until a version is promoted
    twin: bool = False  # the trainer learns in a digital twin (phaser.twin), told --profile
    twin_every_s: float = 60.0
    twin_window: int = 2000  # requests the twin replays (a smaller window forgets old traffic sooner)
    worker_profile: str | None = None  # what the workers really run (default --profile; the router and twin are told --profile)
    routers: int = 1  # router replicas (one consumer group on requests, one shared view: services.router)


def trainer_available() -> bool:
    from phaser.cli.main import app

    return any(c.name == "trainer" for c in app.registered_commands)


def worker_ranges(n_instances: int, workers: int | None) -> list[tuple[int, int]]:
    """Split ``0..n-1`` into contiguous ranges, one per worker process."""
    w = workers or math.ceil(n_instances / INSTANCES_PER_WORKER)
    if not 1 <= w <= n_instances:
        raise PhaserError(f"--workers must be between 1 and --instances ({n_instances}), got {w}")
    base, extra = divmod(n_instances, w)
    out, lo = [], 0
    for k in range(w):
        hi = lo + base + (1 if k < extra else 0)
        out.append((lo, hi - 1))
        lo = hi
    return out


def child_commands(cfg: UpConfig, bootstrap: str, prefix: str) -> dict[str, list[str]]:
    """name -> argv of every child process (the one place that lists them)."""
    py = [sys.executable, "-m", "phaser.cli.main"]
    common = ["--bootstrap", bootstrap, "--topic-prefix", prefix]
    clocked = common + ["--time-scale", repr(cfg.time_scale)]
    online = cfg.policy == ONLINE_POLICY
    policy = ["--policy", cfg.start_policy, "--store", cfg.checkpoints] if online else ["--policy", cfg.policy]
    if cfg.checkpoint and not online:  # rl-*: serve this checkpoint instead of the shipped one
        policy += ["--checkpoint", cfg.checkpoint]
    if online and cfg.twin:  # the twin learns from replays of the real decisions: random picks would buy nothing
        policy += ["--explore", "0"]
    router = py + ["router"] + policy + ["--instances", str(cfg.instances), "--profile", cfg.profile,
                                         "--predictor", cfg.predictor, "--seed", str(cfg.seed),
                                         "--heartbeat-s", repr(cfg.heartbeat_s)] + clocked
    if not 1 <= cfg.routers <= 64:
        raise PhaserError(f"--routers must be between 1 and 64, got {cfg.routers}")
    if cfg.routers == 1:
        cmds = {"router": router}
    else:  # replicas: each its own id and seed (randomized pickers must not herd in step)
        cmds = {f"router-r{k}": [a if i != router.index("--seed") + 1 else str(cfg.seed + k) for i, a in enumerate(router)]
                + ["--replica-id", f"r{k}", "--routers", str(cfg.routers)] for k in range(cfg.routers)}
    real = [p.strip() for p in (cfg.worker_profile or cfg.profile).split(",")]
    if len(real) not in (1, cfg.instances):
        raise PhaserError(f"--worker-profile lists {len(real)} profiles for {cfg.instances} instances; give one or one per instance")
    for lo, hi in worker_ranges(cfg.instances, cfg.workers):
        mine = set(real) if len(real) == 1 else set(real[lo:hi + 1])
        if len(mine) != 1:
            raise PhaserError(f"--worker-profile: worker {lo}-{hi} would host {len(mine)} different profiles; "
                              f"choose --workers so each worker's instances share one")
        backend = ["--backend", cfg.backend]
        if cfg.backend == "openai":  # the worker is the sidecar of these engines
            backend += [a for url in cfg.endpoints[lo:hi + 1] for a in ("--endpoint", url)]
        cmds[f"worker-{lo}-{hi}"] = py + ["worker", "--instances", f"{lo}-{hi}", "--partitions", str(cfg.instances),
                                          "--profile", mine.pop(), "--heartbeat-s", repr(cfg.heartbeat_s),
                                          "--chunked-prefill" if cfg.chunked_prefill else "--no-chunked-prefill"
                                          ] + backend + clocked
    if (online or cfg.trainer) and trainer_available():
        cmds["trainer"] = py + ["trainer", "--store", cfg.checkpoints, "--instances", str(cfg.instances)] + clocked
        if cfg.twin:  # told the router's profile, like the router; it fits what the workers really run
            told = [p.strip() for p in cfg.profile.split(",") if p.strip()]
            cmds["trainer"] += [a for p in told for a in ("--twin-profile", p)] + ["--twin-every-s", repr(cfg.twin_every_s),
                                                                               "--twin-window", str(cfg.twin_window)]
    if cfg.monitor:
        cmds["monitor"] = py + ["monitor", "--interval", repr(cfg.monitor_interval_s)] + common
    if cfg.metrics_port is not None:
        for k, name in enumerate(cmds, start=1):
            cmds[name] += ["--metrics-port", str(cfg.metrics_port + k if cfg.metrics_port else 0)]
    return cmds


def metrics_targets(ready_dir: Path, names: list[str], timeout_s: float = 30.0) -> dict[str, int]:
    """service -> /metrics port, as each child wrote it (``services.metrics.Metrics.serve``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = {}
        for n in names:
            try:
                got[n] = int((ready_dir / f"metrics-{n}").read_text())
            except (OSError, ValueError):
                pass
        if len(got) == len(names) or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def write_metrics_sd(path: str, targets: dict[str, int]) -> None:
    """A Prometheus ``file_sd_configs`` file: one target per service, labelled ``service``."""
    import json

    body = [{"targets": [f"127.0.0.1:{port}"], "labels": {"service": name.split("-")[0], "process": name}}
            for name, port in targets.items()]
    tmp = Path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(body, indent=2))
    tmp.replace(path)  # Prometheus watches the file: never let it read half of one


def _wait_ready(ready_dir: Path, names: list[str], children: Children, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dead = children.dead()
        if dead:
            raise PhaserError("stack child exited during start-up: " + ", ".join(f"{n} (code {c})" for n, c in dead))
        if all((ready_dir / n).exists() for n in names):
            return
        time.sleep(0.05)
    missing = [n for n in names if not (ready_dir / n).exists()]
    raise PhaserError(f"stack not ready after {timeout_s:.0f}s: {', '.join(missing)} did not start")


@dataclass
class UpContext:
    """What a fault hook (``services.chaos``) may act on during a run."""

    children: Children
    cmds: dict[str, list[str]]
    env: dict[str, str]
    bootstrap: str
    topics: Topics
    tally: Tally | None = None
    engines: object | None = None  # services.engines.llamacpp.LocalEngines of `phaser up --engine`
    load_metrics: object | None = None  # services.metrics.load.LoadMetrics (with --metrics-port)

    def respawn(self, name: str) -> None:
        out = sys.stderr if name == "monitor" else None
        self.children.spawn(name, self.cmds[name], env=self.env, stdout=out)


async def _drive_and_collect(cfg: UpConfig, requests: list, bootstrap: str, topics: Topics, children: Children,
                             hook=None, ctx: UpContext | None = None) -> Tally:
    """``hook``: an object with ``async tick(elapsed_wall_s, ctx)`` called every loop (fault injection),
    ``supervise`` (True: it restarts dead children, the run goes on), ``busy`` (True while a fault is
    still in progress: the run does not end) and optionally ``load_wall`` (the load generator's clock)."""
    from load_generator.publisher import publish

    tally = Tally({r.id for r in requests}, cfg.instances)
    clock = StackClock(cfg.time_scale)
    consumer = await start_consumer(bootstrap, [(topics.name("completions"), 0)], group_id=None, client_id="phaser-up")
    producer = make_producer(bootstrap, client_id="phaser-up")
    await producer.start()
    pub = Publisher(producer, topics, source="up")
    extra = {"wall": hook.load_wall} if getattr(hook, "load_wall", None) is not None else {}
    if ctx is not None and ctx.load_metrics is not None:
        extra["progress"] = ctx.load_metrics.progress
    load = asyncio.ensure_future(publish(requests, bootstrap, cfg.time_scale, topics=topics,
                                         idempotent=cfg.bootstrap is not None or cfg.broker == "kafka", **extra))
    if ctx is not None:
        ctx.tally = tally
    t_load = last_progress = time.monotonic()
    report: dict = {}
    try:
        while True:
            msgs, _ = await fetch(consumer, pub, 0.2)
            for m in msgs:
                tally.add(m.msg, now_stack=clock.now())
            if msgs:
                last_progress = time.monotonic()
            if hook is not None:
                await hook.tick(time.monotonic() - t_load, ctx)
                if hook.busy:
                    last_progress = time.monotonic()
            if load.done():
                report = load.result()  # a failed publish is an error of the run
                if tally.done or time.monotonic() - last_progress > cfg.drain_timeout_s:
                    break
            else:
                last_progress = time.monotonic()
            dead = [(n, c) for n, c in children.dead() if n not in OFF_PATH]
            if dead and not (hook is not None and hook.supervise):
                print("stack child died: " + ", ".join(f"{n} (code {c})" for n, c in dead) + "; stopping", file=sys.stderr)
                break
    finally:
        if not load.done():
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
        await pub.flush()
        await producer.stop()
        await stop_consumer(consumer)
    tally.load_report = report
    return tally


def check_config(cfg: UpConfig) -> None:
    """Refuse what a child would refuse, before any child (or broker) starts: the policy, the
    profile(s), and a ``--checkpoint`` (learned policies only; it must load and fit the cluster)."""
    from phaser.engine.profiles import get_profile
    from phaser.policies.base import available, is_learned

    if cfg.broker not in ("tansu", "kafka"):
        raise PhaserError(f"--broker must be tansu or kafka, got {cfg.broker!r}")
    if cfg.broker != "tansu" and cfg.bootstrap is not None:
        raise PhaserError("--broker starts a broker; --bootstrap uses one already running: give one of them")
    if cfg.policy not in available():
        raise PhaserError(f"unknown policy {cfg.policy!r}; known: {', '.join(available())}")
    for p in (x.strip() for x in f"{cfg.profile},{cfg.worker_profile or ''}".split(",")):
        if p:
            get_profile(p)
    if cfg.policy == ONLINE_POLICY and (cfg.start_policy not in available() or is_learned(cfg.start_policy)):
        raise PhaserError(f"--start-policy must be a heuristic, got {cfg.start_policy!r}")
    if cfg.twin and not cfg.trainer:
        raise PhaserError("--twin is the trainer's: it needs the trainer (drop --no-trainer)")
    child_commands(cfg, "127.0.0.1:9092", "")  # per-worker profiles etc.: refused here, before anything starts
    if cfg.checkpoint:
        if not is_learned(cfg.policy):
            raise PhaserError(f"--checkpoint is for learned policies (rl, rl-*): --policy {cfg.policy} would ignore it")
        from phaser.rl.checkpoint import check_compatible, load_checkpoint

        check_compatible(load_checkpoint(cfg.checkpoint), cfg.instances)


def run_up(cfg: UpConfig, hook=None, capture: dict | None = None) -> dict:
    """Run the stack end to end; returns the summary dict (see ``services.summary``).
    ``hook``: fault injection during the load (see ``_drive_and_collect``, ``services.chaos``)."""
    from load_generator.registry import load_workload
    from services.broker import EmbeddedBroker, free_port

    if cfg.requests < 1:
        raise PhaserError(f"--requests must be >= 1, got {cfg.requests}")
    if cfg.engine is not None and cfg.engine != "llama.cpp":
        raise PhaserError(f"unknown --engine {cfg.engine!r}; known: llama.cpp")
    if cfg.engine is not None or cfg.backend == "openai":
        if cfg.time_scale != 1.0:
            raise PhaserError("real engines run in real time: --time-scale must be 1 with --engine or --backend openai")
        if cfg.engine is None and len(cfg.endpoints) != cfg.instances:
            raise PhaserError(f"--backend openai needs one --endpoint per instance: --instances {cfg.instances}, "
                              f"{len(cfg.endpoints)} endpoint(s)")
    elif cfg.backend != "sim":
        raise PhaserError(f"unknown --backend {cfg.backend!r}; known: sim, openai")
    StackClock(cfg.time_scale)  # validates --time-scale here, not in every child
    check_config(cfg)
    worker_ranges(cfg.instances, cfg.workers)
    requests = load_workload(cfg.workload, n=cfg.requests, rate=cfg.rate, seed=cfg.seed)
    prefix = cfg.topic_prefix if cfg.topic_prefix is not None else ("" if cfg.bootstrap is None else f"up-{uuid.uuid4().hex[:8]}-")
    topics = Topics(prefix)
    children = Children()
    broker = None
    ready_dir = Path(tempfile.mkdtemp(prefix="phaser-up-"))
    t0 = time.monotonic()
    engines = own_metrics = None
    try:
        if cfg.engine is not None:  # local real engines first (main thread: they must die with us)
            from services.engines.llamacpp import LocalEngines, ServerConfig

            engines = LocalEngines(cfg.instances, ServerConfig(cfg.engine_slots, cfg.engine_ctx_per_slot),
                                   log=lambda m: print(m, file=sys.stderr), log_dir=ready_dir / "engines")
            print(f"starting {cfg.instances} local llama-server(s)...", file=sys.stderr)
            cfg = replace(cfg, backend="openai", endpoints=tuple(engines.start()))
        if cfg.bootstrap is None and cfg.broker == "kafka":
            from services.apache_kafka import ApacheKafka

            print("starting Apache Kafka (KRaft, single node)...", file=sys.stderr, flush=True)
            broker = ApacheKafka(port=cfg.port or 0).start()
            bootstrap = broker.bootstrap
        elif cfg.bootstrap is None:
            broker = EmbeddedBroker(port=cfg.port or free_port(), schemas=not prefix).start()
            bootstrap = broker.bootstrap
        else:
            bootstrap = cfg.bootstrap
        asyncio.run(ensure_topics(bootstrap, cfg.instances, topics, routers=cfg.routers))
        if not cfg.checkpoints:
            cfg = replace(cfg, checkpoints=str(ready_dir / "checkpoints"))
        if cfg.checkpoint and cfg.policy == ONLINE_POLICY:
            from phaser.versions.store import CheckpointStore

            CheckpointStore(cfg.checkpoints).import_checkpoint(cfg.checkpoint, "phaser up --checkpoint")
        cmds = child_commands(cfg, bootstrap, prefix)
        ctx = UpContext(children, cmds, {"PHASER_READY_DIR": str(ready_dir)}, bootstrap, topics, engines=engines)
        print(f"phaser up: broker {bootstrap}, topic prefix {prefix!r}; attach with: phaser monitor --bootstrap "
              f"{bootstrap}" + (f" --topic-prefix {prefix}" if prefix else ""), file=sys.stderr, flush=True)
        load_metrics = None
        if cfg.metrics_port is not None:
            from services.metrics import Metrics
            from services.metrics.load import LoadMetrics

            own_metrics = Metrics("load")
            load_metrics = ctx.load_metrics = LoadMetrics(own_metrics)
            own_metrics.serve(cfg.metrics_port)
        for name in cmds:
            ctx.respawn(name)
        _wait_ready(ready_dir, [n for n in cmds if n != "trainer"], children, READY_TIMEOUT_S)  # trainer: off the request path
        metrics_ports: dict[str, int] = {}
        if load_metrics is not None:
            metrics_ports = {"load": own_metrics.port, **metrics_targets(ready_dir, list(cmds))}
            print("phaser up: metrics " + ", ".join(f"{n} :{p}" for n, p in metrics_ports.items()), file=sys.stderr, flush=True)
            if cfg.metrics_sd:
                write_metrics_sd(cfg.metrics_sd, metrics_ports)
        if cfg.load_delay_s > 0:
            print(f"phaser up: stack ready; the load starts in {cfg.load_delay_s:g} s (--load-delay)", file=sys.stderr, flush=True)
            time.sleep(cfg.load_delay_s)
        t_load = time.monotonic()
        interrupted = False
        try:
            tally = asyncio.run(_drive_and_collect(cfg, requests, bootstrap, topics, children, hook, ctx))
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM: stop in order and report what came back so far
            if ctx.tally is None:
                raise
            interrupted, tally = True, ctx.tally
            print("\ninterrupted: stopping the stack in order (router, workers, trainer, monitor, broker)", file=sys.stderr)
            children.stop_all(ordered=True)
        if cfg.linger_s > 0 and not interrupted:
            print(f"phaser up: load done; the stack stays up {cfg.linger_s:g} s (--linger)", file=sys.stderr, flush=True)
            try:
                time.sleep(cfg.linger_s)
            except KeyboardInterrupt:
                interrupted = True
        summary = tally.summary()
        summary["peak_rss_mb"] = children.peak_rss_mb()  # per process, before they stop
        summary["interrupted"] = interrupted
        summary["metrics"] = metrics_ports
        if capture is not None:  # for callers that need more than the summary (services.chaos)
            capture.update(completions=list(tally.completions.values()), topics=topics)
        summary["load"] = {k: tally.load_report[k] for k in ("sent", "failed", "refused", "max_lag_s", "p99_lag_s")
                           if k in tally.load_report}
        from phaser.versions.report import plot_versions, policy_versions

        summary["policy_versions"] = policy_versions(tally.completions.values())
        if cfg.plot and tally.completions:
            plot_versions(tally.completions.values(), cfg.plot,
                          title=f"{cfg.workload}, {cfg.policy}, {cfg.instances} x {cfg.profile}")
        summary.update({"backend": cfg.backend, "engine": cfg.engine, "endpoints": list(cfg.endpoints),
                        "workload": cfg.workload, "policy": cfg.policy, "instances": cfg.instances, "profile": cfg.profile,
                        "time_scale": cfg.time_scale, "seed": cfg.seed, "startup_wall_s": round(t_load - t0, 3),
                        "run_wall_s": round(time.monotonic() - t_load, 3)})
        return summary
    finally:
        children.stop_all(ordered=True)
        if own_metrics is not None:
            own_metrics.close()
        if broker is not None:
            broker.stop()
        if engines is not None:
            engines.stop()
        shutil.rmtree(ready_dir, ignore_errors=True)
