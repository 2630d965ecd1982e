"""Helpers for the stack tests: the router and a worker run as tasks in the
test's event loop (the same code as the services, minus the process), the load
goes through the real publisher, and completions are collected from Kafka."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from load_generator.publisher import publish
from services.clock import StackClock
from services.kafka import Publisher, Topics, ensure_topics, fetch, make_producer, start_consumer, stop_consumer
from services.router import build_core, run_router
from services.worker import WorkerCore, build_engines, run_worker


class StackRun:
    def __init__(self):
        self.completions: dict = {}
        self.duplicates = 0
        self.router = None
        self.worker = None
        self.publish_report: dict = {}


async def run_inprocess_stack(bootstrap: str, requests: list, *, instances: int, profile: str, time_scale: float,
                              policy: str = "round-robin", topics: Topics | None = None, timeout_s: float = 60.0,
                              extra_load=None) -> StackRun:
    """Run router + one worker hosting every instance + the publisher until every
    request id came back (or ``timeout_s`` wall seconds passed)."""
    topics = topics or Topics(f"t{uuid.uuid4().hex[:8]}-")
    clock = StackClock(time_scale)
    await ensure_topics(bootstrap, instances, topics)
    out = StackRun()
    out.router = build_core(policy, instances, [profile], seed=0, predictor="online")
    out.worker = WorkerCore(build_engines(list(range(instances)), profile, False))
    stop, r_ready, w_ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(run_router(bootstrap, out.router, clock, topics, stop, ready=r_ready)),
             asyncio.create_task(run_worker(bootstrap, out.worker, clock, topics, stop, ready=w_ready))]
    consumer = await start_consumer(bootstrap, [(topics.name("completions"), 0)], group_id=None)
    producer = make_producer(bootstrap)
    await producer.start()
    pub = Publisher(producer, topics, source="test")
    want = {r.id for r in requests}
    try:
        await asyncio.wait_for(asyncio.gather(r_ready.wait(), w_ready.wait()), 30)  # as `phaser up` does
        if extra_load is not None:
            await extra_load(topics)
        load = asyncio.create_task(publish(requests, bootstrap, time_scale, topics=topics, idempotent=False))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not want <= out.completions.keys():
            msgs, _ = await fetch(consumer, pub, 0.2)
            for m in msgs:
                if m.msg.request_id in out.completions:
                    out.duplicates += 1
                out.completions[m.msg.request_id] = m.msg
            for t in tasks:
                if t.done():
                    t.result()  # a crashed service fails the test with its own traceback
        out.publish_report = await load
        msgs, _ = await fetch(consumer, pub, 0.3)  # anything late (duplicates) after the last one
        for m in msgs:
            out.duplicates += m.msg.request_id in out.completions
            out.completions.setdefault(m.msg.request_id, m.msg)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await stop_consumer(consumer)
        await producer.stop()
    return out


@pytest.fixture
def stack_runner():
    return run_inprocess_stack
