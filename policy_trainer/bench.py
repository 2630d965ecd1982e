"""Benchmarks of the online-learning loop (issue 7 targets), runnable as
``python -m policy_trainer.bench swap|ingest`` and reused by the tests.

* ``swap``: router (hot swap on) + worker + open-loop load in one process on a
  real broker; while the load runs, ``swaps`` policy versions are published on
  ``policy-updates`` one after another. Swap latency = stack-clock time from
  the publish to the first decision taken by that version, reported in wall
  seconds (stack seconds / time scale). Also checks that every request came
  back exactly once (lost = requested − completed, duplicates by id).
  Operator ``promoted`` events are used so a swap switches 100% of traffic at
  once (a canary swap differs only by the hash split, decided per request).
* ``ingest``: ``events`` assignment+completion messages are produced first,
  then the trainer consumes them from the beginning; reports events/s and the
  consumer lag (offsets behind, and age of the newest record read) at the end.

Both run every service in one asyncio loop on this 2-core machine shared with
the broker, so the numbers are a floor for separate processes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import json
import os
import random
import tempfile
import time
import uuid
from typing import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phaser.rl.checkpoint import spec_metadata
from phaser.rl.features import FeatureSpec
from phaser.versions.store import CheckpointStore
from protos.messages import Assignment, Completion, PolicyUpdate, Request


def random_params(n_instances: int, seed: int, hidden: int = 16, favour: int | None = None,
                  favour_by: float = 100.0) -> dict[str, np.ndarray]:
    """A small random mlp in the checkpoint format; ``favour`` biases its
    argmax to one instance (a deliberately bad policy: everything there)."""
    rng = np.random.default_rng(seed)
    d = FeatureSpec(n_instances).size
    out_bias = np.zeros(n_instances + 1, np.float32)
    out_bias[-1] = -favour_by  # never WAIT
    if favour is not None:
        out_bias[favour] = favour_by
    return {
        "hidden_0.kernel": (rng.standard_normal((d, hidden)) / np.sqrt(d)).astype(np.float32),
        "hidden_0.bias": np.zeros(hidden, np.float32),
        "hidden_1.kernel": (rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32),
        "hidden_1.bias": np.zeros(hidden, np.float32),
        "out.kernel": (rng.standard_normal((hidden, n_instances + 1)) / np.sqrt(hidden)).astype(np.float32),
        "out.bias": out_bias,
    }


def version_metadata(n_instances: int, hidden: int = 16, source: str = "bench") -> dict:
    return {"variant": "rl-guided", "arch": "mlp", "n_instances": n_instances,
            "feature_spec": spec_metadata(FeatureSpec(n_instances)), "config": {"hidden": [hidden, hidden]},
            "source": source}


@dataclass
class LiveRun:
    completions: dict = field(default_factory=dict)
    duplicates: int = 0
    assignments: dict = field(default_factory=dict)  # request id -> Assignment
    assignment_duplicates: int = 0
    updates: list = field(default_factory=list)  # PolicyUpdates seen on the topic
    published_at: dict = field(default_factory=dict)  # version -> stack time the test published it
    router: object = None
    worker: object = None
    publish_report: dict = field(default_factory=dict)
    clock: object = None


async def run_live(bootstrap: str, requests: list, *, instances: int, profile: str, time_scale: float,
                   swap_opts: dict, driver=None, before_load=None, topics=None, timeout_s: float = 60.0,
                   policy: str = "round-robin", settle_after_s: float = 0.3,
                   until: Callable[[LiveRun], bool] | None = None) -> LiveRun:
    """Router with ``services.policy_swap.attach(**swap_opts)`` + one worker for
    every instance + the real load publisher, in this event loop, until every
    request completed (or ``timeout_s``). ``before_load(run, publish_update)``
    is awaited once the services consume, before the first request;
    ``driver(run, publish_update)`` runs alongside the load. ``until(run)``:
    once it holds, the load stops (the rest of ``requests`` is never sent) and
    the run ends when every request that was sent has completed."""
    from load_generator.publisher import publish
    from services.clock import StackClock
    from services.kafka import Publisher, Topics, ensure_topics, fetch, make_producer, start_consumer, stop_consumer
    from services.policy_swap import attach
    from services.router import build_core, run_router
    from services.worker import WorkerCore, build_engines, run_worker

    topics = topics or Topics(f"t{uuid.uuid4().hex[:8]}-")
    clock = StackClock(time_scale)
    await ensure_topics(bootstrap, instances, topics)
    run = LiveRun(clock=clock)
    run.router = build_core(policy, instances, [profile], seed=0, predictor="online")
    attach(run.router, **swap_opts)
    run.worker = WorkerCore(build_engines(list(range(instances)), profile, False))
    stop = asyncio.Event()
    ready_dir = os.environ.setdefault("PHASER_READY_DIR", tempfile.mkdtemp(prefix="phaser-bench-ready-"))
    for n in ("router", f"worker-0-{instances - 1}"):
        Path(ready_dir, n).unlink(missing_ok=True)
    tasks = [asyncio.create_task(run_router(bootstrap, run.router, clock, topics, stop)),
             asyncio.create_task(run_worker(bootstrap, run.worker, clock, topics, stop))]
    consumer = await start_consumer(
        bootstrap, [(topics.name("completions"), 0), (topics.name("policy-updates"), 0)]
        + [(topics.name("assignments"), p) for p in range(instances)], group_id=None)
    producer = make_producer(bootstrap)
    await producer.start()
    pub = Publisher(producer, topics, source="bench", clock_now=clock.now)
    await producer.partitions_for(topics.name("policy-updates"))  # metadata now, not on the first publish

    async def publish_update(upd: PolicyUpdate) -> None:
        run.published_at[upd.version] = clock.now()
        await pub.send("policy-updates", upd.model_copy(update={"ts_s": clock.now()}))
        await pub.flush()

    want = {r.id for r in requests}

    def absorb(msgs):
        for m in msgs:
            if m.topic == "completions":
                run.duplicates += m.msg.request_id in run.completions
                run.completions.setdefault(m.msg.request_id, m.msg)
            elif m.topic == "assignments":
                run.assignment_duplicates += m.msg.request.id in run.assignments
                run.assignments.setdefault(m.msg.request.id, m.msg)
            elif m.topic == "policy-updates":
                run.updates.append(m.msg)

    try:
        # the load starts once router and worker consume (else it queues up and is routed in one burst)
        deadline = time.monotonic() + 30.0
        while not (run.router.swap is not None and ready_dir is not None
                   and all(Path(ready_dir, n).exists() for n in ("router", f"worker-0-{instances - 1}"))):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        if before_load is not None:
            await before_load(run, publish_update)
        stop_load = asyncio.Event()
        load = asyncio.create_task(publish(requests, bootstrap, time_scale, topics=topics, idempotent=False,
                                           stop=stop_load))
        drive = asyncio.create_task(driver(run, publish_update)) if driver is not None else None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not want <= run.completions.keys():
            msgs, _ = await fetch(consumer, pub, 0.1)
            absorb(msgs)
            for t in tasks + ([drive] if drive else []):
                if t.done() and t.exception() is not None:
                    t.result()  # a crashed service fails loudly
            if until is not None and not stop_load.is_set() and until(run):
                stop_load.set()
            if stop_load.is_set() and load.done():  # what was sent, in order, is what must complete
                want = {r.id for r in requests[:load.result()["handed"]]}
        run.publish_report = await load
        if drive is not None:  # bounded: a driver waiting for something that cannot happen must not hang the run
            try:
                await asyncio.wait_for(drive, max(1.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                print("warning: the run's driver did not finish before the deadline; stopped it", file=sys.stderr)
        end = time.monotonic() + settle_after_s  # late duplicates and the router's last events
        while time.monotonic() < end:
            msgs, _ = await fetch(consumer, pub, 0.1)
            absorb(msgs)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_consumer(consumer)
        await producer.stop()
        if run.router.swap is not None:
            run.router.swap.close()
    return run


def swap_latencies(run: LiveRun) -> dict[int, float]:
    """version -> wall seconds from its publication to its first decision."""
    first = run.router.swap.first_decision_s
    scale = run.clock.time_scale
    return {v: (first[v] - t) / scale for v, t in run.published_at.items() if v in first}


async def swap_benchmark(bootstrap: str, *, n_requests: int, rate: float, swaps: int, instances: int = 4,
                         time_scale: float = 10.0, profile: str = "v100-llama2-7b", workload: str = "paper-mix",
                         seed: int = 0, timeout_s: float = 120.0) -> dict:
    from load_generator.registry import load_workload

    requests = load_workload(workload, n=n_requests, rate=rate, seed=seed)
    with tempfile.TemporaryDirectory(prefix="phaser-swap-") as d:
        store = CheckpointStore(d)
        versions = [store.publish(random_params(instances, seed=k), version_metadata(instances)) for k in range(swaps)]
        async def driver(run, publish_update):
            # swap k is published once k/(swaps+1) of the requests were routed: spread over the load
            first = run.router.swap.first_decision_s
            for k, (v, path, checksum) in enumerate(versions, start=1):
                while run.router.routed < k * n_requests / (swaps + 1) or (k > 1 and versions[k - 2][0] not in first):
                    if run.router.routed >= n_requests:  # everything was routed: no version can decide any more
                        return  # (a slow host: the caller sees fewer swaps than asked, rather than a hang)
                    await asyncio.sleep(0.001)
                await publish_update(PolicyUpdate(kind="promoted", version=v, path=str(path), checksum=checksum,
                                                  reason="bench swap", ts_s=0.0))

        run = await run_live(bootstrap, requests, instances=instances, profile=profile, time_scale=time_scale,
                             swap_opts={"store": d, "explore": 0.0}, driver=driver, timeout_s=timeout_s)
    lat = swap_latencies(run)
    vals = np.array(sorted(lat.values())) if lat else np.array([np.nan])
    ids = [r.id for r in requests]
    return {
        "requests": n_requests, "rate_wall_req_s": rate * time_scale, "time_scale": time_scale, "swaps": swaps,
        "swaps_seen": len(lat), "completed": len(set(ids) & run.completions.keys()),
        "lost": len(set(ids) - run.completions.keys()), "duplicate_completions": run.duplicates,
        "routed": run.router.routed, "duplicate_assignments": run.assignment_duplicates,
        "swap_latency_wall_s": {"max": float(vals.max()), "p50": float(np.median(vals)), "mean": float(vals.mean())},
        "served_counts": {str(k): v for k, v in sorted(run.router.swap.served_counts.items())},
        "load_on_schedule": run.publish_report.get("on_schedule"),
        "achieved_rate": run.publish_report.get("achieved_rate"),
    }


def synthetic_events(n_requests: int, instances: int, seed: int = 0) -> list[tuple[str, int, object]]:
    """(topic, partition, message) for ``n_requests`` assignments + completions."""
    rng = random.Random(seed)
    d = FeatureSpec(instances).size
    out = []
    for i in range(n_requests):
        t = 0.01 * i
        inst = rng.randrange(instances)
        req = Request(id=f"ing-{i}", arrival_s=t, prompt_tokens=rng.randint(10, 1000), output_tokens=rng.randint(1, 500))
        a = Assignment(request=req, instance=inst, policy="rl", policy_version=1, decided_s=t, router_wait_s=0.0,
                       predicted_tokens=100.0, predicted_bucket=0, features=[rng.random() for _ in range(d)], action=inst)
        e2e = rng.uniform(0.5, 5.0)
        c = Completion(request_id=req.id, instance=inst, arrival_s=t, admitted_s=t, first_token_s=t + 0.1,
                       finish_s=t + e2e, ttft_s=0.1, tbt_mean_s=0.03, tbt_p99_s=0.05, tbt_max_s=0.06, e2e_s=e2e,
                       router_wait_s=0.0, queue_wait_s=0.0, preemptions=0, prompt_tokens=req.prompt_tokens,
                       output_tokens=req.output_tokens)
        out.append(("assignments", inst, a))
        out.append(("completions", 0, c))
    return out


async def ingest_benchmark(bootstrap: str, *, events: int, instances: int = 4, seed: int = 0,
                           learn: bool = True, timeout_s: float = 120.0) -> dict:
    """Produce ``events`` messages, then time the trainer consuming them all."""
    from services.clock import StackClock
    from services.kafka import Publisher, Topics, ensure_topics, make_producer

    from policy_trainer.service import build_core, run_trainer

    topics = Topics(f"t{uuid.uuid4().hex[:8]}-")
    await ensure_topics(bootstrap, instances, topics)
    producer = make_producer(bootstrap)
    await producer.start()
    pub = Publisher(producer, topics, source="bench")
    for topic, part, msg in synthetic_events(events // 2, instances, seed):
        await pub.send(topic, msg, partition=part)
    await pub.flush()
    await producer.stop()
    reports: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="phaser-ingest-") as d:
        # the synthetic stream spans events/2 * 0.01 stack s; a 1 s settle keeps the learner busy as in production
        core = build_core(d, instances, None, seed, publish_every_updates=10**9, publish_every_s=1e9,
                          freeze=not learn, settle_s=60.0)
        # the backlog is read as fast as possible, so the stack clock follows the
        # stream: "now" is the newest event time read (as if consumed live)
        latest = [0.0]
        on_message = core.on_message

        def tracking(msg, now_s):
            t = msg.decided_s if isinstance(msg, Assignment) else msg.finish_s if isinstance(msg, Completion) else 0.0
            if t > latest[0]:
                latest[0] = t
            on_message(msg, latest[0])

        core.on_message = tracking
        clock = StackClock(1.0, wall=lambda: latest[0])
        stop = asyncio.Event()
        total = (events // 2) * 2
        t0 = time.monotonic()
        task = asyncio.create_task(run_trainer(bootstrap, core, clock, instances, topics, stop, report_every_s=0.5,
                                               on_report=reports.append))
        while core.events < total and time.monotonic() - t0 < timeout_s:
            await asyncio.sleep(0.01)
            if task.done():
                task.result()
        elapsed = time.monotonic() - t0
        await asyncio.sleep(0.6)  # one more report: the lag after catching up
        stop.set()
        await task
    last = reports[-1] if reports else {}
    return {"events": total, "consumed": core.events, "elapsed_s": round(elapsed, 3),
            "events_per_s": round(core.events / elapsed, 1), "joined": core.joiner.counters.joined,
            "transitions": core.learner.transitions, "updates": core.learner.updates,
            "lag_offsets_after": last.get("lag_offsets"), "learn": learn}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m policy_trainer.bench", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    s = sub.add_parser("swap", help="hot-swap latency and exactly-once across swaps")
    s.add_argument("--requests", type=int, default=10_000)
    s.add_argument("--rate", type=float, default=1000.0, help="requests per wall second")
    s.add_argument("--swaps", type=int, default=10)
    s.add_argument("--time-scale", type=float, default=100.0,
                   help="stack seconds per wall second (100: 1,000 wall req/s = 10 stack req/s, within 4 V100s' capacity)")
    s.add_argument("--instances", type=int, default=4)
    s.add_argument("--profile", default="v100-llama2-7b")
    i = sub.add_parser("ingest", help="trainer ingest rate and consumer lag")
    i.add_argument("--events", type=int, default=100_000)
    i.add_argument("--no-learn", action="store_true", help="join and build transitions only")
    for p in (s, i):
        p.add_argument("--bootstrap", default=None, help="Kafka bootstrap (default: start an embedded broker)")
    a = ap.parse_args(argv)

    async def go(bootstrap):
        if a.what == "swap":
            # the workload's rate is in stack req/s: one wall second is time_scale stack seconds
            return await swap_benchmark(bootstrap, n_requests=a.requests, rate=a.rate / a.time_scale, swaps=a.swaps,
                                        instances=a.instances, time_scale=a.time_scale, profile=a.profile)
        return await ingest_benchmark(bootstrap, events=a.events, learn=not a.no_learn)

    if a.bootstrap:
        out = asyncio.run(go(a.bootstrap))
    else:
        from services.broker import EmbeddedBroker, free_port

        with EmbeddedBroker(port=free_port(), schemas=False) as b:
            out = asyncio.run(go(b.bootstrap))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
