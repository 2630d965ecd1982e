"""Both brokers' lifecycles: no orphans after kill -9, Apache Kafka's durable log."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from services.broker import free_port, port_open
from services.kafka import Topics, ensure_topics, fetch, open_producer, start_consumer, stop_consumer, Publisher


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("kind", ["tansu", "kafka"])
def test_kill_9_of_phaser_broker_leaves_nothing_holding_the_port(kind, request, tmp_path):
    """Regression (fault probe): kill -9 of `phaser broker` orphaned the tansu child."""
    if kind == "kafka":
        request.getfixturevalue("kafka")  # provisioned (or the tier is skipped with its reason)
    port = free_port()
    argv = [sys.executable, "-m", "phaser.cli.main", "broker", "--port", str(port)] + (["--kafka"] if kind == "kafka" else [])
    log = tmp_path / "broker.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        # a JVM starting next to the session's broker on a loaded 2-core box: a generous deadline,
        # and an early exit fails at once with what the broker said
        opened = _wait(lambda: port_open("127.0.0.1", port) or p.poll() is not None, 240)
        assert opened and p.poll() is None, f"broker never opened its port: {log.read_text()[-2000:]}"
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert _wait(lambda: not port_open("127.0.0.1", port), 30), "the broker outlived `phaser broker`"
    finally:
        if p.poll() is None:
            p.kill()


async def test_apache_kafka_keeps_its_log_across_a_restart(kafka):
    """Apache Kafka only (tansu keeps nothing): what was acknowledged before a
    broker restart is there after it, and the idempotent producer is granted."""
    import protos

    topics = Topics(f"t{uuid.uuid4().hex[:8]}-")
    await ensure_topics(kafka.bootstrap, 1, topics)
    prod, idem = await open_producer(kafka.bootstrap)
    assert idem is True
    pub = Publisher(prod, topics, "test", idempotent=idem)
    for i in range(20):
        await pub.send("requests", protos.Request(id=f"d{i}", arrival_s=1.0, prompt_tokens=3, output_tokens=2))
    await pub.flush()
    await prod.stop()
    await asyncio.to_thread(kafka.restart)
    c = await start_consumer(kafka.bootstrap, [(topics.name("requests"), 0)], group_id=None)
    got: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while len(got) < 20 and time.monotonic() < deadline:
            msgs, _ = await fetch(c, Publisher(None, topics, "test"), 0.5)
            got |= {m.msg.id for m in msgs}
    finally:
        await stop_consumer(c)
    assert got == {f"d{i}" for i in range(20)}


def test_a_kraft_cluster_id_never_looks_like_an_option(monkeypatch):
    """Regression: a random id starting with '-' made kafka-storage's parser fail ('expected one argument')."""
    import base64
    import uuid as uuid_mod

    from services import apache_kafka

    dash = base64.urlsafe_b64decode("-" + "A" * 21 + "==")  # 16 bytes whose encoding starts with '-'
    seq = iter([uuid_mod.UUID(bytes=dash), uuid_mod.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(apache_kafka.uuid, "uuid4", lambda: next(seq))
    cid = apache_kafka._cluster_id()
    assert not cid.startswith("-") and len(cid) == 22
    monkeypatch.undo()
    assert all(not apache_kafka._cluster_id().startswith("-") for _ in range(2000))
