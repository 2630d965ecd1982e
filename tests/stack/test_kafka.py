"""services.kafka against a real broker: idempotent topics, validating fetch,
dead-lettering on both the consumer side and the broker-refusal side."""

from __future__ import annotations

import uuid

import orjson
import pytest

import protos
from phaser.errors import PhaserError
from services.kafka import Publisher, Topics, ensure_topics, fetch, make_producer, partition_count, start_consumer, stop_consumer


def _prefix() -> Topics:
    return Topics(prefix=f"t{uuid.uuid4().hex[:8]}-")


async def _drain(consumer, pub, want: int, rounds: int = 50):
    got = []
    for _ in range(rounds):
        msgs, _pos = await fetch(consumer, pub, 0.1)
        got += msgs
        if len(got) >= want:
            break
    return got


async def test_ensure_topics_is_idempotent_and_grows_or_refuses_too_few_partitions(bare_broker):
    t = _prefix()
    await ensure_topics(bare_broker.bootstrap, 2, t)
    await ensure_topics(bare_broker.bootstrap, 2, t)  # second call: all exist, no error
    assert await partition_count(bare_broker.bootstrap, t.name("assignments")) == 2
    assert await partition_count(bare_broker.bootstrap, t.name("requests")) == 1
    if bare_broker.kind == "tansu":
        with pytest.raises(PhaserError, match="partitions"):  # tansu cannot grow a topic: a clear error
            await ensure_topics(bare_broker.bootstrap, 5, t)
    else:  # Apache Kafka grows `assignments` to one partition per instance
        await ensure_topics(bare_broker.bootstrap, 5, t)
        assert await partition_count(bare_broker.bootstrap, t.name("assignments")) == 5


async def test_fetch_dead_letters_invalid_and_keeps_valid(bare_broker):
    t = _prefix()
    await ensure_topics(bare_broker.bootstrap, 1, t)
    prod = make_producer(bare_broker.bootstrap)
    await prod.start()
    pub = Publisher(prod, t, source="test")
    good = protos.Request(id="a", arrival_s=1.0, prompt_tokens=3, output_tokens=2)
    await pub.send_raw("requests", b"{not json")
    await pub.send("requests", good)
    await pub.send_raw("requests", orjson.dumps({"id": "b", "arrival_s": 1.0}))
    await pub.flush()
    c = await start_consumer(bare_broker.bootstrap, [(t.name("requests"), 0)], group_id=None)
    dlc = await start_consumer(bare_broker.bootstrap, [(t.name("dead-letters"), 0)], group_id=None)
    try:
        got = await _drain(c, pub, 1)
        await pub.flush()
        assert [m.msg.id for m in got] == ["a"]
        dls = await _drain(dlc, pub, 2)
        reasons = [m.msg.reason for m in dls]
        assert len(dls) == 2 and "not JSON" in reasons[0] and "prompt_tokens" in reasons[1]
        assert all(m.msg.topic == "requests" and m.msg.source == "test" for m in dls)
    finally:
        await stop_consumer(c)
        await stop_consumer(dlc)
        await prod.stop()


async def test_broker_schema_refusal_is_dead_lettered_by_the_producer(schema_broker):
    """tansu only: its schema registry refuses the record (a plain Kafka has none)."""
    broker = schema_broker
    t = Topics()  # schema registry only knows the unprefixed names
    await ensure_topics(broker.bootstrap, 1, t)
    prod = make_producer(broker.bootstrap)
    await prod.start()
    pub = Publisher(prod, t, source="producer-test")
    marker = uuid.uuid4().hex
    bad = orjson.dumps({"id": marker, "arrival_s": 0.0, "prompt_tokens": -5, "v": 1})
    await pub.send_raw("requests", bad)
    await pub.flush()
    assert pub.refused == 1
    dlc = await start_consumer(broker.bootstrap, [(t.name("dead-letters"), 0)], group_id=None)
    try:
        dls = await _drain(dlc, pub, 10**9, rounds=10)
        mine = [m.msg for m in dls if marker.encode() in __import__("base64").b64decode(m.msg.original_b64)]
        assert len(mine) == 1 and "refused by the broker" in mine[0].reason and mine[0].topic == "requests"
    finally:
        await stop_consumer(dlc)
        await prod.stop()
