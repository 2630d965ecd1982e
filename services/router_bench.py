"""``phaser bench router-throughput``: decisions per second of router processes, end to end.

``replicas`` router processes start (``phaser router``; with more than one, a group as in
``phaser up --routers``) and, once every one owns its share, ``requests`` requests (a
paper-mix draw) are published as fast as one producer goes. The clock runs from the first
publish to the moment a separate consumer has read back an assignment for every request, so
the figure is consume → decide → produce → acknowledged, not the policy alone (``phaser bench
router-latency`` times that); ``publish_s`` says how long the producer itself took.

With ``backlog`` the requests are all published *before* the routers start, and the clock runs
from the moment every router is ready to the last assignment read back: the routers drain a
full ``requests`` log as fast as they go, with no producer competing for the cores (Kafka's own
``kafka-consumer-perf-test`` measures a consumer this way). Without it, routers keep up with a
producer publishing as fast as it can, on the same cores. No workers
run: the views only grow, as they would at that many outstanding requests. Every process —
broker, routers, producer, reader — shares this machine's cores, so replicas show how far
they scale *here*, not elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid


async def _publish_all(bootstrap: str, topics, reqs) -> float:
    from services.kafka import make_producer

    producer = make_producer(bootstrap, client_id="phaser-bench")
    await producer.start()
    t0 = time.perf_counter()
    try:
        import protos

        name = topics.name("requests")
        for r in reqs:
            await producer.send(name, protos.encode(r), key=r.id.encode())
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - t0


async def _wait_assigned(bootstrap: str, topics, instances: int, want: int, deadline_s: float) -> float:
    """Wall time at which ``want`` assignments have been read back from the broker (a separate
    consumer counting records: what it reads was acknowledged and is durable)."""
    from services.kafka import start_consumer, stop_consumer

    name = topics.name("assignments")
    c = await start_consumer(bootstrap, [(name, p) for p in range(instances)], group_id=None, client_id="phaser-bench-ends")
    try:
        seen, t_end = 0, time.perf_counter() + deadline_s
        while time.perf_counter() < t_end:
            for records in (await c.getmany(timeout_ms=100, max_records=10_000)).values():
                seen += len(records)
            if seen >= want:
                return time.perf_counter()
        raise TimeoutError(f"{seen} of {want} assignments after {deadline_s:g} s")
    finally:
        await stop_consumer(c)


def run(bootstrap: str | None, requests: int, instances: int, policy: str, profile: str, replicas: int = 1,
        feature_share: float = 1.0, deadline_s: float = 600.0, backlog: bool = False) -> dict:
    """One measurement (see the module docstring); starts an embedded broker when ``bootstrap`` is None."""
    from load_generator.registry import load_workload
    from services.broker import EmbeddedBroker, free_port
    from services.kafka import Topics, ensure_topics

    broker = None
    if bootstrap is None:
        broker = EmbeddedBroker(port=free_port(), schemas=False).start()
        bootstrap = broker.bootstrap
    topics = Topics(prefix=f"rt{uuid.uuid4().hex[:8]}-")
    try:
        reqs = list(load_workload("paper-mix", n=requests, rate=1000.0, seed=0))
        asyncio.run(ensure_topics(bootstrap, instances, topics, routers=replicas))
        if backlog:  # the whole load waits on `requests` before the routers start: the clock starts with them
            pub_s = asyncio.run(_publish_all(bootstrap, topics, reqs))
        procs, t0 = _start_routers(bootstrap, topics, instances, policy, profile, replicas, feature_share,
                                   settle=not backlog)
        try:
            if backlog:
                t1 = asyncio.run(_wait_assigned(bootstrap, topics, instances, len(reqs), deadline_s))
            else:  # routers ready and idle; the clock starts with the first request published
                t0 = time.perf_counter()
                pub_s, t1 = asyncio.run(_publish_and_wait(bootstrap, topics, reqs, instances, deadline_s))
        finally:
            _stop(procs)
        el = t1 - t0
        return {"requests": requests, "instances": instances, "policy": policy, "replicas": replicas,
                "mode": "backlog" if backlog else "live", "feature_share": feature_share,
                "broker": "embedded tansu" if broker else bootstrap,
                "publish_s": round(pub_s, 3), "route_s": round(el, 3), "decisions_per_s": round(requests / el, 1),
                "cpus": os.cpu_count()}
    finally:
        if broker is not None:
            broker.stop()


async def _publish_and_wait(bootstrap, topics, reqs, instances, deadline_s) -> tuple[float, float]:
    waiter = asyncio.ensure_future(_wait_assigned(bootstrap, topics, instances, len(reqs), deadline_s))
    pub_s = await _publish_all(bootstrap, topics, reqs)
    return pub_s, await waiter


def _start_routers(bootstrap, topics, instances, policy, profile, replicas, feature_share, settle: bool = True):
    """``replicas`` router processes (``phaser router``; with more than one, the group of
    ``phaser up --routers``), returned once every one is ready (in a group: owns a share), with
    the ``time.perf_counter()`` at which the last became ready. ``settle``: then wait a second
    more, for a group's first partition moves."""
    import tempfile
    from pathlib import Path

    ready = Path(tempfile.mkdtemp(prefix="phaser-rt-"))
    env = {**os.environ, "PHASER_READY_DIR": str(ready)}
    procs, names = [], []
    for k in range(replicas):
        cmd = [sys.executable, "-m", "phaser.cli.main", "router", "--policy", policy, "--instances", str(instances),
               "--profile", profile, "--seed", str(k), "--time-scale", "1", "--bootstrap", bootstrap,
               "--topic-prefix", topics.prefix, "--feature-share", repr(feature_share), "--down-after-s", "0"]
        if replicas > 1:
            cmd += ["--replica-id", f"r{k}", "--routers", str(replicas)]
        names.append(f"router-r{k}" if replicas > 1 else "router")
        log = open(ready / f"{names[-1]}.log", "w")
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    t_end = time.monotonic() + 180
    while not all((ready / n).exists() for n in names):
        if time.monotonic() > t_end or any(p.poll() is not None for p in procs):
            _stop(procs)
            raise RuntimeError("the router processes did not start")
        time.sleep(0.01)
    t_ready = time.perf_counter()
    if settle:
        time.sleep(1.0)  # a group settles: the first replica's early share moves when the last joins
    return procs, t_ready


def _stop(procs) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
