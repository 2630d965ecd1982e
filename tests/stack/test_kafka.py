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


async def test_send_many_batches_per_partition_in_order_and_refuses_oversized(bare_broker):
    """The router's batched path: one producer batch per partition, every record there in
    order, one too large for the record limit dead-lettered (the others still sent)."""
    from services.kafka import MAX_RECORD_BYTES

    t = _prefix()
    await ensure_topics(bare_broker.bootstrap, 3, t)  # `assignments`: 3 partitions
    prod = make_producer(bare_broker.bootstrap)
    await prod.start()
    pub = Publisher(prod, t, source="test")
    reqs = [protos.Request(id=f"r{k}", arrival_s=1.0, prompt_tokens=3, output_tokens=2, prompt_text="y" * 200)
            for k in range(3000)]  # ~250 kB per partition: more than one producer batch each
    huge = protos.Request(id="huge", arrival_s=1.0, prompt_tokens=3, output_tokens=2, prompt_text="x" * 64)
    def assign(r, i):
        return protos.Assignment(request=r, instance=i, policy="p", policy_version=0, decided_s=1.0, router_wait_s=0.0,
                                 predicted_tokens=1.0, predicted_bucket=0, action=-1)

    huge_a = assign(huge, 1)
    recs = [(assign(r, k % 3), k % 3, r.id.encode()) for k, r in enumerate(reqs)]
    # every valid message fits the record limit by its bounds; one built without validation
    # (``model_construct``, as services do for their own output) may not
    big = protos.Assignment.model_construct(**{**dict(huge_a), "features": [0.5] * 300_000})
    assert len(protos.encode(big)) > MAX_RECORD_BYTES
    recs.insert(1500, (big, 1, b"big"))
    await pub.send_many("assignments", recs)
    await pub.flush()
    assert pub.refused == 1 and pub.sent == 3000 + 1  # + the dead letter
    c = await start_consumer(bare_broker.bootstrap, [(t.name("assignments"), p) for p in range(3)], group_id=None)
    dlc = await start_consumer(bare_broker.bootstrap, [(t.name("dead-letters"), 0)], group_id=None)
    try:
        got = await _drain(c, pub, 3000)
        by_part = {p: [m.msg.request.id for m in got if m.partition == p] for p in range(3)}
        assert by_part == {p: [f"r{k}" for k in range(p, 3000, 3)] for p in range(3)}
        dls = await _drain(dlc, pub, 1)
        assert len(dls) == 1 and "exceeds" in dls[0].msg.reason and dls[0].msg.partition == 1
    finally:
        await stop_consumer(c)
        await stop_consumer(dlc)
        await prod.stop()
