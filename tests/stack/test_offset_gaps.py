"""``services.kafka.fetch`` never skips a record silently: a batch that jumps
over offsets is cut at the gap and re-read once (``_gap_free``); a gap that is
really empty (another producer's transaction markers) is accepted the second
time. Opened for the rare tansu loss of #16: a request the topic holds that a
live consumer never delivered."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer, TopicPartition

import protos
from services import kafka as K
from services.kafka import Publisher, Topics, ensure_topics, fetch, start_consumer, stop_consumer


@dataclass
class _Rec:
    offset: int


class _Seeks:
    """Stands in for the consumer's ``seek`` only: the gap logic is pure bookkeeping."""

    def __init__(self):
        self.seeks = []

    def seek(self, tp, offset):
        self.seeks.append((tp.partition, offset))


def test_a_gap_is_re_read_once_then_accepted():
    c, tp = _Seeks(), TopicPartition("t", 3)
    before = len(K.GAPS)
    assert [r.offset for r in K._gap_free(c, tp, [_Rec(0), _Rec(1), _Rec(2)])] == [0, 1, 2]
    # 3 and 4 skipped: keep what came before the gap, seek back to 3
    assert [r.offset for r in K._gap_free(c, tp, [_Rec(5), _Rec(6)])] == []
    assert c.seeks == [(3, 3)] and K.GAPS[before:] == [("t", 3, 3, 5)]
    # the re-read delivers them: all kept, no new gap
    assert [r.offset for r in K._gap_free(c, tp, [_Rec(3), _Rec(4), _Rec(5)])] == [3, 4, 5]
    # a gap inside a batch: cut there
    assert [r.offset for r in K._gap_free(c, tp, [_Rec(6), _Rec(8)])] == [6]
    assert c.seeks[-1] == (3, 7)
    # the same gap again: the broker holds nothing at 7, accept it
    assert [r.offset for r in K._gap_free(c, tp, [_Rec(8), _Rec(9)])] == [8, 9]
    assert len(c.seeks) == 2
    # partitions are independent
    assert [r.offset for r in K._gap_free(c, TopicPartition("t", 4), [_Rec(40)])] == [40]


async def test_transaction_markers_are_accepted_gaps_and_nothing_is_lost_or_repeated(kafka):
    """Apache Kafka only (tansu has no transactions): each commit marker takes an
    offset, so a read_committed-less consumer sees a gap per transaction."""
    t = Topics(prefix=f"t{uuid.uuid4().hex[:8]}-")
    await ensure_topics(kafka.bootstrap, 1, t)
    name = t.name("requests")
    prod = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, transactional_id=f"gap-{uuid.uuid4().hex[:6]}")
    await prod.start()
    try:
        for k in range(3):
            async with prod.transaction():
                for i in range(4):
                    r = protos.Request(id=f"r{k}-{i}", arrival_s=1.0, prompt_tokens=3, output_tokens=2)
                    await prod.send(name, protos.encode(r), partition=0)
    finally:
        await prod.stop()
    c = await start_consumer(kafka.bootstrap, [(name, 0)], group_id=None)
    pub = Publisher(None, t, source="test")
    got = []
    try:
        for _ in range(100):
            msgs, _pos = await fetch(c, pub, 0.2)
            got += [m.msg.id for m in msgs]
            if len(got) >= 12:
                break
    finally:
        await stop_consumer(c)
    assert got == [f"r{k}-{i}" for k in range(3) for i in range(4)]
    # the two markers between the three transactions were seen, re-read once and accepted
    assert [(w, g) for tn, _p, w, g in K.GAPS if tn == name] == [(4, 5), (9, 10)]
