"""The load generator against a real broker: N requests published, N distinct ids read back,
stack-clock arrivals on schedule, refusals dead-lettered, unreachable broker reported."""

from __future__ import annotations

import asyncio
import base64
import time

import pytest

import protos
from load_generator import load_workload
from load_generator.publisher import publish
from load_generator.trace import make_request
from phaser.errors import PhaserError
from services.broker import free_port
from services.kafka import Topics, start_consumer, stop_consumer


async def _read_all(bootstrap: str, topic: str, want, timeout_s: float = 15.0) -> list:
    """Consume ``topic`` from the beginning until ``want(messages)`` or the timeout."""
    c = await start_consumer(bootstrap, [(topic, 0)], group_id=None)
    out: list = []
    try:
        deadline = time.monotonic() + timeout_s
        while not want(out) and time.monotonic() < deadline:
            batches = await c.getmany(timeout_ms=200)
            for records in batches.values():
                out.extend(r.value for r in records)
    finally:
        await stop_consumer(c)
    return out


async def test_publishes_n_requests_with_n_distinct_ids_on_the_stack_clock(broker):
    n, scale = 400, 10.0
    work = load_workload("paper-mix", n=n, rate=5000.0, seed=4)  # 5,000 stack req/s = 500 wall req/s
    topics = Topics("t-load-basic-")
    snaps = []
    before = time.time() * scale
    rep = await publish(work, broker.bootstrap, scale, topics=topics, run_id="r1", progress=snaps.append)
    after = time.time() * scale
    assert (rep["requested"], rep["sent"], rep["failed"], rep["refused"]) == (n, n, 0, 0)
    assert rep["topic"] == "t-load-basic-requests"
    assert rep["idempotent"] is (broker.kind == "kafka")  # tansu refuses InitProducerId
    assert rep["target_rate"] == pytest.approx((n - 1) / ((work[-1].arrival_s - work[0].arrival_s) / scale))
    assert snaps and snaps[-1].state == "done" and snaps[-1].acked == n

    raw = await _read_all(broker.bootstrap, "t-load-basic-requests", lambda got: len(got) >= n)
    msgs = [protos.decode("requests", v) for v in raw]
    ids = [m.id for m in msgs]
    assert len(ids) == n and len(set(ids)) == n
    assert set(ids) == {f"r1-{r.id}" for r in work}
    by_id = {m.id: m for m in msgs}
    first = by_id[f"r1-{work[0].id}"].arrival_s
    assert before <= first <= after  # stack clock = wall * time_scale
    for r in work:  # arrivals keep the workload's stack-time offsets exactly
        m = by_id[f"r1-{r.id}"]
        assert m.arrival_s - first == pytest.approx(r.arrival_s - work[0].arrival_s, abs=1e-3)
        assert (m.prompt_tokens, m.output_tokens, m.task) == (r.prompt_tokens, r.output_tokens, r.task)


async def test_broker_refusal_is_dead_lettered_not_resent(schema_broker):
    """tansu only: the broker's schema registry is what refuses."""
    broker = schema_broker
    # unprefixed `requests`: the broker's schema registry validates it; prompt_tokens=0 violates the schema.
    work = [make_request("ok-a", 0.0, 5, 5), make_request("bad", 0.3, 5, 5), make_request("ok-b", 0.6, 5, 5)]
    work[1] = work[1].model_copy(update={"prompt_tokens": 0})  # bypasses validation on purpose
    rep = await publish(work, broker.bootstrap, 1.0, run_id="refusal-test")
    assert (rep["sent"], rep["refused"], rep["failed"]) == (2, 1, 0)
    assert rep["on_schedule"] is False  # not every request delivered

    def mine(raw):
        return [d for d in (protos.decode("dead-letters", v) for v in raw) if b"refusal-test-bad" in base64.b64decode(d.original_b64)]

    raw = await _read_all(broker.bootstrap, "dead-letters", lambda got: len(mine(got)) >= 1)
    [dl] = mine(raw)
    assert dl.topic == "requests" and "refused" in dl.reason and dl.source == "load"
    reqs = await _read_all(broker.bootstrap, "requests", lambda got: sum(b"refusal-test-ok" in v for v in got) >= 2,
                           timeout_s=5.0)
    assert sorted(protos.decode("requests", v).id for v in reqs if b"refusal-test-" in v) == \
        ["refusal-test-ok-a", "refusal-test-ok-b"]


async def test_unreachable_broker_is_retried_then_reported():
    snaps = []
    t = time.monotonic()
    with pytest.raises(PhaserError, match=r"cannot reach Kafka at 127.0.0.1:\d+ after \d+ attempts"):
        await publish(load_workload("paper-mix", n=5), f"127.0.0.1:{free_port()}", 1.0,
                      connect_timeout_s=0.8, progress=snaps.append)
    assert time.monotonic() - t < 10
    retries = [s.note for s in snaps if "unreachable" in s.note]
    assert len(retries) >= 2 and "retrying in" in retries[0]


async def test_user_mistakes_are_phaser_errors(broker):
    dup = [make_request("x", 0.0, 5, 5), make_request("x", 1.0, 5, 5)]
    with pytest.raises(PhaserError, match="duplicate request ids"):
        await publish(dup, broker.bootstrap, 1.0)
    with pytest.raises(PhaserError, match="empty"):
        await publish([], broker.bootstrap, 1.0)
    with pytest.raises(PhaserError, match="time-scale"):
        await publish(load_workload("paper-mix", n=2), broker.bootstrap, 0.0)
    unsorted = [make_request("a", 1.0, 5, 5), make_request("b", 0.0, 5, 5)]
    with pytest.raises(PhaserError, match="not sorted"):
        await publish(unsorted, broker.bootstrap, 1.0)


async def test_stop_event_ends_early_and_reports_what_was_sent(broker):
    work = load_workload("paper-mix", n=50, rate=10.0, seed=1)  # 5 s of schedule at scale 1
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.5, stop.set)
    rep = await publish(work, broker.bootstrap, 1.0, topics=Topics("t-load-stop-"), run_id="s", stop=stop)
    assert 0 < rep["handed"] < 50 and rep["sent"] == rep["handed"]
    assert any("stopped after" in note for note in rep["notes"])


def test_cli_load_writes_the_report(broker, tmp_path):
    from phaser.cli.main import main

    out = tmp_path / "load.json"
    code = main(["load", "-w", "paper-mix", "-n", "100", "--rate", "2000", "--time-scale", "1", "--bootstrap",
                 broker.bootstrap, "--topic-prefix", "t-load-cli-", "--no-progress", "--json", str(out)])
    assert code == 0
    import json

    rep = json.loads(out.read_text())
    for key in ("requested", "sent", "failed", "refused", "duration_s", "target_rate", "achieved_rate", "max_lag_s", "p99_lag_s"):
        assert key in rep
    assert rep["sent"] == rep["requested"] == 100


async def test_stalled_broker_is_reported_and_nothing_is_dropped_or_duplicated():
    """SIGSTOP a private broker mid-run: the schedule keeps going (open loop), the
    progress says the broker is not acknowledging, and after SIGCONT every request
    arrives exactly once."""
    import os
    import signal

    from services.broker import EmbeddedBroker

    work = load_workload("paper-mix", n=300, rate=100.0, seed=9)  # 3 s at scale 1
    snaps = []
    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        loop = asyncio.get_running_loop()
        loop.call_later(0.8, os.kill, b.proc.pid, signal.SIGSTOP)
        loop.call_later(2.6, os.kill, b.proc.pid, signal.SIGCONT)
        rep = await publish(work, b.bootstrap, 1.0, topics=Topics("t-stall-"), run_id="st", progress=snaps.append)
        assert (rep["sent"], rep["failed"], rep["refused"]) == (300, 0, 0)
        assert max(s.stalled_s for s in snaps) > 1.0  # said so while it happened
        assert rep["p99_lag_s"] < 0.5  # the schedule itself was not held up
        raw = await _read_all(b.bootstrap, "t-stall-requests", lambda got: len(got) >= 300)
    ids = [protos.decode("requests", v).id for v in raw]
    assert len(ids) == 300 and len(set(ids)) == 300
