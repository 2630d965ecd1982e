"""Shared Kafka plumbing for every live service: topic names and creation,
producer/consumer factories, a validating fetch that dead-letters what it cannot
use, and a publisher that dead-letters what the broker refuses.

Decisions (and the measured quirks of the embedded tansu broker behind them,
see ``services.broker``):

* **Topics** are the six of ``protos.TOPICS``. ``assignments`` has one partition
  per instance (a worker reads only its own instances' partitions); every other
  topic has one partition, which keeps ``requests`` in arrival order and lets one
  router own it. Creation is idempotent (error 36 = already exists); an existing
  ``assignments`` with too few partitions is grown.
* An optional **topic prefix** (``--topic-prefix`` / ``PHASER_TOPIC_PREFIX``)
  namespaces a run on a shared broker (tests use it to isolate runs). The
  embedded broker's schema registry only knows the unprefixed names, so a
  prefixed run is validated by the consumers only.
* **Producers** batch with ``linger_ms`` 1 ms; ``open_producer`` asks for an
  idempotent producer (acks=all) and gets one on Apache Kafka, a plain one
  (acks=1) on tansu. Measured on the
  embedded broker (1 producer → 1 consumer, 30 ms apart): linger 5 ms gives a
  hop of 8.1 ms p50 / 11.9 ms p99, linger 1 ms 3.8 / 6.4 ms. Every wall ms of
  hop is ``time_scale`` stack ms of router wait, so the shorter linger wins;
  under load batches still form while a request is in flight. tansu fails
  ``InitProducerId``, so there exactly-once per request is kept by
  de-duplicating on request id downstream (router, worker, trainer, summary).
* **Send errors**: transient ones are retried with backoff, permanent ones
  dead-lettered (``Publisher``).
* **Consumers** never start "at latest" (tansu's high watermark lags the log):
  they are assigned partitions explicitly (no group rebalancing) and start at
  their group's committed offset, else at the beginning.
* **Validation**: every record is decoded with ``protos.decode``; an invalid one
  is published to ``dead-letters`` with the reason and skipped, so a bad message
  never stops a consumer. A record the broker refuses (schema registry) reaches
  the producer as ``UnknownError``; it is treated as permanent for that record
  and dead-lettered too. Transient send errors are retried.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from dataclasses import dataclass
from typing import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.errors import (KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError,
                             UnknownTopicOrPartitionError)

import protos
from services.kafka_security import client_options
from phaser.errors import PhaserError, ServiceFailure
from protos.messages import TOPICS, Message

#: producer batching delay, ms (see module docstring)
LINGER_MS = 1
#: largest poll wait a consumer blocks for, seconds; services pass shorter ones
MAX_POLL_S = 0.5
DEAD_LETTERS = "dead-letters"
#: largest record a producer sends (bytes): the broker's ``message.max.bytes``
#: default is 1 MiB; records are bounded well below it by the schema (protos)
MAX_RECORD_BYTES = 1024 * 1024
#: room left for the record batch header, key and headers
RECORD_OVERHEAD_BYTES = 1024
#: wall seconds a transiently failing record is re-sent before it is dead-lettered
RETRY_FOR_S = 120.0
#: how long the broker may hold an empty fetch, ms. Every hop costs up to this
#: (tansu answers at the deadline, not on arrival), × the time scale in stack
#: time: 5 ms = 50 stack-ms at scale 10, about one decode iteration.
FETCH_MAX_WAIT_MS = 5
#: a **paced** fetch (``Pace``) for consumers that need no hop latency -- the
#: trainer, the monitor, a router replica's view of its peers: the broker holds
#: it until ``fetch_min_bytes`` (1 MiB, i.e. in practice until the deadline).
#: Measured on tansu: a fetch costs it ~0.1 ms plus ~36 us per partition read,
#: whether or not the partition has data, and a ``min_bytes=1`` fetch returns as
#: soon as any one record lands. Six consumers of the 128-partition
#: ``assignments`` at a 5 ms hop kept tansu at 139 % CPU with no traffic at all
#: (1 consumer at 50 ms: 10 %; at 200 ms: 4 %), which is what sank the
#: 4-router x 128-instance stack on it.
PACED_MIN_BYTES = 1024 * 1024
#: the longest paced wait, ms (trainer and monitor use it outright)
PACED_MAX_WAIT_MS = 100
#: a replica's view of its peers may lag by this much *stack* time
PEER_VIEW_LAG_STACK_S = 0.05


@dataclass(frozen=True)
class Pace:
    """How a consumer's fetches wait at the broker (see ``PACED_MIN_BYTES``)."""

    max_wait_ms: int = FETCH_MAX_WAIT_MS
    min_bytes: int = 1

    @classmethod
    def paced(cls, max_wait_ms: int = PACED_MAX_WAIT_MS) -> "Pace":
        return cls(max(FETCH_MAX_WAIT_MS, min(PACED_MAX_WAIT_MS, int(max_wait_ms))), PACED_MIN_BYTES)

    @classmethod
    def peer_view(cls, time_scale: float) -> "Pace":
        """``PEER_VIEW_LAG_STACK_S`` of stack time in wall ms: 50 ms at time scale 1, the 5 ms hop at 10."""
        return cls.paced(round(PEER_VIEW_LAG_STACK_S * 1000 / time_scale))


#: every hop-latency consumer (workers, a router's ``requests``)
HOP = Pace()


@dataclass(frozen=True)
class Topics:
    """Topic names of one run: ``prefix + base`` for each base name in protos.TOPICS."""

    prefix: str = ""

    def name(self, base: str) -> str:
        if base not in TOPICS:
            raise PhaserError(f"unknown topic {base!r}; known: {', '.join(TOPICS)}")
        return self.prefix + base

    def base(self, name: str) -> str:
        """Inverse of ``name``: the protos topic a (possibly prefixed) name carries."""
        if self.prefix and name.startswith(self.prefix):
            name = name[len(self.prefix):]
        return name

    def partitions(self, n_instances: int, routers: int = 1) -> dict[str, int]:
        """Partitions per topic: ``assignments`` one per instance, ``requests`` one per router
        replica (the group's unit of work), every other topic one."""
        return {self.name(b): (n_instances if b == "assignments" else max(1, routers) if b == "requests" else 1)
                for b in TOPICS}


def _kafka_error(bootstrap: str, e: Exception) -> PhaserError:
    text = str(e)
    name = e.__class__.__name__
    return PhaserError(f"cannot reach Kafka at {bootstrap}: {text if text.startswith(name) else f'{name} {text}'}".strip())


async def create_topics(bootstrap: str, wanted: dict[str, int]) -> None:
    """Create each ``name -> partitions`` topic that is missing (error 36,
    already exists, is fine). The one place phaser creates topics. Kafka errors
    propagate unchanged so callers can retry connection failures."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options())
    await admin.start()
    try:
        for name, parts in wanted.items():
            try:
                await admin.create_topics([NewTopic(name, num_partitions=parts, replication_factor=1)])
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


def connect_timeout_s() -> float:
    """Wall seconds every command keeps retrying an unreachable broker at start
    (``PHASER_CONNECT_TIMEOUT``, default 60: a service started with its broker,
    as compose does, waits for it rather than failing)."""
    try:
        return max(0.0, float(os.environ.get("PHASER_CONNECT_TIMEOUT", "") or 60.0))
    except ValueError:
        raise PhaserError("PHASER_CONNECT_TIMEOUT must be a number of seconds") from None


async def reach(bootstrap: str, attempt, timeout_s: float | None = None, notify=None):
    """``await attempt()``, retried with jittered exponential backoff (tenacity) while the
    broker is unreachable (``KafkaConnectionError``), for ``connect_timeout_s()``; then one
    readable ``PhaserError``. The one connect policy of every command."""
    from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

    timeout_s = connect_timeout_s() if timeout_s is None else timeout_s
    n = 0

    def before_sleep(state):
        if notify is not None:
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            notify(f"broker at {bootstrap} unreachable (attempt {state.attempt_number}); retrying in {wait:.2f}s")

    try:
        async for att in AsyncRetrying(wait=wait_exponential_jitter(multiplier=0.1, max=2.0, jitter=0.1), stop=stop_after_delay(timeout_s),
                                       retry=retry_if_exception_type(KafkaConnectionError), before_sleep=before_sleep):
            with att:
                n += 1
                return await attempt()
    except RetryError as e:
        err = e.last_attempt.exception()
        raise PhaserError(f"cannot reach Kafka at {bootstrap} after {n} attempts over {timeout_s:g}s "
                          f"({err.__class__.__name__})") from None


async def ensure_topics(bootstrap: str, n_instances: int, topics: Topics = Topics(), routers: int = 1) -> dict[str, int]:
    """Create every topic if missing (idempotent); ``assignments`` gets at least
    ``n_instances`` partitions and ``requests`` at least ``routers`` (one per router
    replica). Returns topic -> partitions requested. An unreachable broker is retried
    (``reach``)."""
    if n_instances < 1:
        raise PhaserError(f"need at least one instance, got {n_instances}")
    wanted = topics.partitions(n_instances, routers)
    try:
        await reach(bootstrap, lambda: create_topics(bootstrap, wanted))
    except KafkaError as e:
        raise _kafka_error(bootstrap, e) from None
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options())
    try:
        await admin.start()
    except KafkaError as e:
        raise _kafka_error(bootstrap, e) from None
    try:
        for base, need, what in (("assignments", n_instances, f"{n_instances} instances need one each"),
                                 ("requests", max(1, routers), f"{routers} router replicas need one each")):
            have = await partition_count(bootstrap, topics.name(base))
            if have >= need:
                continue
            try:
                await admin.create_partitions({topics.name(base): NewPartitions(total_count=need)})
            except KafkaError as e:  # tansu does not implement CreatePartitions
                raise PhaserError(
                    f"topic {topics.name(base)!r} has {have} partitions but {what}, "
                    f"and the broker cannot add partitions ({e.__class__.__name__}); use another --topic-prefix or a fresh broker"
                ) from None
    finally:
        await admin.close()
    return wanted


async def partition_count(bootstrap: str, topic: str) -> int:
    """Number of partitions of ``topic`` as the broker's metadata reports it (0 if absent).
    Lists every topic first (a metadata request naming the topic would make a broker that
    auto-creates topics, tansu, create it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000, **client_options())
    try:
        await admin.start()
        if topic not in await admin.list_topics():
            return 0
        (meta,) = [t for t in await admin.describe_topics([topic]) if t["topic"] == topic]
        return len(meta["partitions"])
    except KafkaConnectionError as e:
        raise _kafka_error(bootstrap, e) from None
    finally:
        await admin.close()


async def stop_consumer(c: AIOKafkaConsumer) -> None:
    """Stop a consumer. The yield first works around aiokafka 0.14 raising
    CancelledError from ``stop()`` when its no-group coordinator task was
    cancelled before it ever ran (a consumer stopped right after starting).
    aiokafka's fetcher also re-raises the cancellation of its own fetch task
    when the broker is gone; that CancelledError is not ours and is swallowed
    (the consumer is stopped all the same) unless this task is being cancelled."""
    await asyncio.sleep(0)
    try:
        await c.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def warm_producer(producer: AIOKafkaProducer, topics: Topics, bases: Iterable[str]) -> None:
    """Fetch metadata for the topics a service will produce to, before it says
    it is ready: otherwise the first record to each topic waits for a metadata
    round trip (measured: the first ~10 requests of a run had 0.3–1 stack s of
    router wait at scale 10)."""
    for b in bases:
        await producer.partitions_for(topics.name(b))


def make_producer(bootstrap: str, client_id: str = "phaser", idempotent: bool = False) -> AIOKafkaProducer:
    """A producer (not started). ``idempotent``: acks=all and broker-side
    de-duplication of retried batches (Apache Kafka); else acks=1 (tansu)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id=client_id, linger_ms=LINGER_MS, acks="all" if idempotent else 1,
        enable_idempotence=idempotent, max_batch_size=256 * 1024, request_timeout_ms=10_000,
        max_request_size=MAX_RECORD_BYTES, **client_options(),
    )


async def open_producer(bootstrap: str, client_id: str = "phaser", idempotent: bool = True) -> tuple[AIOKafkaProducer, bool]:
    """A started producer, idempotent where the broker grants one (Apache
    Kafka); tansu fails ``InitProducerId`` with ``UnknownError`` and gets a
    plain producer. Returns (producer, idempotent). ``KafkaConnectionError``
    propagates (callers retry or report it)."""
    import logging

    if idempotent:
        sender_log = logging.getLogger("aiokafka.producer.sender")
        level = sender_log.level
        sender_log.setLevel(logging.CRITICAL)  # tansu's refusal is expected: no traceback in the log
        p = make_producer(bootstrap, client_id, idempotent=True)
        try:
            await p.start()
            return p, True
        except KafkaConnectionError:
            await p.stop()
            raise
        except KafkaError:
            await p.stop()
        finally:
            sender_log.setLevel(level)
    p = make_producer(bootstrap, client_id)
    try:
        await p.start()
    except BaseException:
        await p.stop()
        raise
    return p, False


async def start_consumer(bootstrap: str, partitions: Iterable[tuple[str, int]], group_id: str | None,
                         client_id: str = "phaser", pace: Pace = HOP) -> AIOKafkaConsumer:
    """A started consumer explicitly assigned to ``partitions`` [(topic, p)],
    positioned at the group's committed offset, else at the beginning."""
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=pace.max_wait_ms, fetch_min_bytes=pace.min_bytes,
        max_poll_records=2000, **client_options(),
    )
    try:
        await c.start()
    except KafkaError as e:
        raise _kafka_error(bootstrap, e) from None
    tps = [TopicPartition(t, p) for t, p in partitions]
    c.assign(tps)
    for tp in tps:
        committed = await c.committed(tp) if group_id else None
        if committed is None or committed < 0:
            await c.seek_to_beginning(tp)
        else:
            c.seek(tp, committed)
    return c


#: a router replica's consumer-group session on ``requests``: a replica killed without leaving
#: is noticed after this (Kafka's ``group.min.session.timeout.ms`` default is 6 s)
GROUP_SESSION_MS = 6000
GROUP_HEARTBEAT_MS = 1000


async def start_group_consumer(bootstrap: str, topic: str, group_id: str, listener, client_id: str = "phaser"
                               ) -> AIOKafkaConsumer:
    """A started consumer that **subscribes** to ``topic`` as a member of ``group_id``: the
    broker's group coordinator deals its partitions among the members and moves them when one
    joins, leaves or dies (``listener``: an ``aiokafka.abc.ConsumerRebalanceListener``). Each
    partition is read from the group's committed offset, else from the beginning."""
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, client_id=client_id, enable_auto_commit=False,
        auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_MAX_WAIT_MS, max_poll_records=2000,
        session_timeout_ms=GROUP_SESSION_MS, heartbeat_interval_ms=GROUP_HEARTBEAT_MS, **client_options(),
    )
    try:
        await c.start()
    except KafkaError as e:
        raise _kafka_error(bootstrap, e) from None
    c.subscribe([topic], listener=listener)
    return c


def forget_positions(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition]) -> None:
    """Drop what the gap guard (``_gap_free``) expects next on ``tps``: a partition that moved
    away and back continues from the group's offset, not from where this consumer left it."""
    state = _EXPECTED.get(consumer)
    if state is not None:
        for tp in tps:
            state.pop(tp, None)


async def read_back(bootstrap: str, topics: "Topics", base: str, partitions: Iterable[int], *,
                    since_unix: float | None = None, timeout_s: float = 120.0, client_id: str = "phaser-recover",
                    with_offsets: bool = False) -> tuple[list, bool]:
    """Decode what ``base``'s ``partitions`` hold, from the start (or from the
    first record at or after ``since_unix``, where the broker can look up
    timestamps; where it cannot, from the start) up to the end offsets seen when
    called: the state a restarting service derives from the stream. Records that
    do not decode are skipped. Returns (messages, complete) — ``complete`` is False
    when ``timeout_s`` ran out first; ``with_offsets``: (partition, offset, message) each."""
    import time

    name = topics.name(base)
    tps = [TopicPartition(name, p) for p in partitions]
    c = await start_consumer(bootstrap, [(name, tp.partition) for tp in tps], group_id=None, client_id=client_id)
    out: list[Message] = []
    try:
        ends = await c.end_offsets(tps)
        if since_unix is not None:
            since = await c.offsets_for_times({tp: int(since_unix * 1000) for tp in tps})
            for tp in tps:
                o = since.get(tp)
                c.seek(tp, ends[tp] if o is None else o.offset)  # None: nothing that recent
        deadline = time.monotonic() + timeout_s
        while True:
            behind = [tp for tp in tps if await c.position(tp) < ends[tp]]
            if not behind:
                return out, True
            if time.monotonic() >= deadline:
                return out, False
            for records in (await c.getmany(*behind, timeout_ms=500, max_records=5000)).values():
                for r in records:
                    try:
                        msg = protos.decode(base, r.value)
                        out.append((r.partition, r.offset, msg) if with_offsets else msg)
                    except protos.DecodeError:
                        continue
    finally:
        await stop_consumer(c)


async def commit(consumer: AIOKafkaConsumer, positions: dict[TopicPartition, int], stats=None) -> bool | None:
    """Commit ``positions`` (next offset to read per partition). A failed commit
    only means some records are re-read after a restart, which downstream
    de-duplication absorbs, so it is reported and not raised: True = done,
    False = failed, None = failed because the broker no longer knows the topic
    (an in-memory broker that restarted). ``stats`` (``services.metrics.ConsumerStats``)
    is told of a commit that succeeded: the base of the consumer-lag gauge."""
    if not positions:
        return True
    try:
        await consumer.commit(dict(positions))
        if stats is not None:
            stats.on_commit(positions)
        return True
    except KafkaError as e:  # depends on broker state
        print(f"warning: commit failed: {e.__class__.__name__} {e}".rstrip(), file=sys.stderr)
        return None if isinstance(e, UnknownTopicOrPartitionError) else False


class BrokerLost(ServiceFailure):
    """The broker has refused every commit for ``broker_lost_s()`` seconds: it
    restarted without its state (tansu keeps nothing) or is unreachable. The
    service exits non-zero so its supervisor restarts it against the broker
    as it is now, instead of running on, connected but stuck."""


def broker_lost_s() -> float:
    """Wall seconds of failing commits after which a service gives up (``PHASER_BROKER_LOST_S``, default 30)."""
    import os

    try:
        v = float(os.environ.get("PHASER_BROKER_LOST_S", "30"))
    except ValueError:
        raise PhaserError("PHASER_BROKER_LOST_S must be a number of seconds") from None
    if not v > 0:
        raise PhaserError("PHASER_BROKER_LOST_S must be > 0")
    return v


#: wall seconds a stopping service waits for its last flush and commit before it gives up on them
STOP_FLUSH_S = 10.0


async def bounded(aw, timeout_s: float, what: str) -> None:
    """Await ``aw`` for at most ``timeout_s`` (shutdown steps must never hang on a dead broker)."""
    try:
        await asyncio.wait_for(aw, timeout_s)
    except asyncio.TimeoutError:
        print(f"warning: {what} did not finish in {timeout_s:g}s (broker unreachable?); "
              "records not acknowledged are re-read or re-sent after a restart", file=sys.stderr)
    except KafkaError as e:
        print(f"warning: {what} failed: {e.__class__.__name__} {e}".rstrip(), file=sys.stderr)


class Committer:
    """Offset commits in the background, at most every ``every_s`` wall seconds.

    A commit must follow the acknowledgement of what the committed records
    produced (else a crash could lose them), i.e. a producer flush plus a
    broker round trip — tens of wall ms that, awaited in a service's loop,
    would show up as router wait or late completions (× the time scale). So
    the positions are snapshotted in the loop and flushed+committed by a task.

    ``check()`` raises ``BrokerLost`` once flushes and commits have failed
    without a break for ``lost_s`` wall seconds, or ``GONE_AFTER`` commits in a
    row were refused because the broker no longer has the topics (tansu after a
    restart: nothing the service holds can be committed ever again)."""

    GONE_AFTER = 5

    def __init__(self, consumer: AIOKafkaConsumer, publisher: "Publisher", every_s: float, wall=None,
                 lost_s: float | None = None, stats=None):
        import time

        self.consumer, self.publisher, self.every_s = consumer, publisher, every_s
        self.stats = stats  # services.metrics.ConsumerStats: told of every successful commit
        self._wall = wall or time.monotonic
        self._next = self._wall() + every_s
        self._task: asyncio.Task | None = None
        self.lost_s = broker_lost_s() if lost_s is None else lost_s
        self._last_ok = self._wall()
        self.failures = 0
        self._gone = 0

    def maybe(self, positions) -> None:
        """If a commit is due and none is running, commit ``positions()`` in the background."""
        if self._wall() < self._next or (self._task is not None and not self._task.done()):
            return
        pos = positions()
        if pos:
            self._task = asyncio.get_running_loop().create_task(self._run(pos))
        else:
            self._last_ok = self._wall()
        self._next = self._wall() + self.every_s

    def check(self) -> None:
        """``BrokerLost`` when nothing could be committed for ``lost_s`` (a commit in flight counts as failing)."""
        if self._gone >= self.GONE_AFTER:
            raise BrokerLost(f"the broker no longer has this service's topics ({self._gone} commits refused with "
                             "UnknownTopicOrPartition): it restarted without its state; exiting so a supervisor "
                             "restarts this service")
        if self._wall() - self._last_ok >= self.lost_s:
            raise BrokerLost(f"no offset commit succeeded for {self.lost_s:g}s ({self.failures} failed): "
                             "the broker lost its state or is unreachable; exiting so a supervisor restarts this service")

    async def _run(self, pos) -> None:
        try:
            await asyncio.wait_for(self.publisher.flush(), self.lost_s)
        except (asyncio.TimeoutError, KafkaError):
            self.failures += 1
            return
        ok = await commit(self.consumer, pos, self.stats)
        if ok:
            self._last_ok, self._gone = self._wall(), 0
        else:
            self.failures += 1
            self._gone = self._gone + 1 if ok is None else 0

    async def close(self, positions) -> None:
        """Wait for a running commit, then flush and commit ``positions()`` once
        more; bounded by ``STOP_FLUSH_S`` so a stop never hangs on a dead broker."""
        async def _close():
            if self._task is not None:
                await asyncio.gather(self._task, return_exceptions=True)
            pos = positions()
            await self.publisher.flush()
            await commit(self.consumer, pos, self.stats)

        await bounded(_close(), STOP_FLUSH_S, "the last flush and commit")


def is_transient(err: BaseException) -> bool:
    """A send error worth retrying: the broker was unreachable, slow or
    changing leaders (``NodeNotReadyError``, ``RequestTimedOutError``, a batch
    that expired in the client). Everything else (``UnknownError`` = tansu's
    schema refusal, ``MessageSizeTooLargeError``, ...) is a permanent refusal."""
    return isinstance(err, KafkaTimeoutError) or bool(getattr(err, "retriable", False))


class Publisher:
    """A producer that sends ``protos`` messages without waiting per record,
    retries transient failures with jittered exponential backoff (tenacity)
    and dead-letters what the broker refuses for good, so that no single
    record can stop a service.

    * A record larger than ``MAX_RECORD_BYTES`` (the producer's and broker's
      limit) is refused before it is sent; its dead letter carries a truncated
      copy (``protos.codec.dead_letter``).
    * A transient failure (``is_transient``) re-sends the record, up to
      ``RETRY_FOR_S`` wall seconds; only then is it dead-lettered. A re-send
      can duplicate a record the broker did write before the failure: every
      consumer de-duplicates on request id (router, worker, trainer, summary).
    """

    def __init__(self, producer: AIOKafkaProducer, topics: Topics, source: str, clock_now=None, idempotent: bool = False):
        self.producer = producer
        self.topics = topics
        self.source = source
        self.idempotent = idempotent
        self._now = clock_now or (lambda: 0.0)
        self._pending: set[asyncio.Future] = set()
        self._tasks: set[asyncio.Task] = set()
        self.refused = 0
        self.sent = 0
        self.retried = 0
        self.metrics = None  # services.metrics.Metrics: records sent and dead letters by kind

    async def send(self, base_topic: str, msg: Message, partition: int | None = None, key: bytes | None = None) -> None:
        await self.send_raw(base_topic, protos.encode(msg), partition=partition, key=key)

    async def send_raw(self, base_topic: str, data: bytes, partition: int | None = None, key: bytes | None = None) -> None:
        topic = self.topics.name(base_topic)
        if len(data) + len(key or b"") > MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES:
            self._refuse(topic, data, partition,
                         f"record of {len(data)} bytes exceeds the {MAX_RECORD_BYTES}-byte record limit")
            return
        try:
            fut = await self.producer.send(topic, data, partition=partition, key=key)
        except KafkaError as e:
            if is_transient(e):
                self._retry_later(topic, data, partition, key, e)
            else:
                self._refuse(topic, data, partition, f"refused by the producer: {e.__class__.__name__} {e}".strip())
            return
        self._pending.add(fut)
        fut.add_done_callback(lambda f, t=topic, d=data, p=partition, k=key: self._done(f, t, d, p, k))
        self.sent += 1
        if self.metrics is not None:
            self.metrics.records_sent.labels(base_topic).inc()

    async def send_many(self, base_topic: str, records: list[tuple[Message, int, bytes | None]]) -> None:
        """Send ``(msg, partition, key)`` records as one producer batch per partition: what
        ``send`` does for each, with one future and one callback per batch instead of per
        record (the router's hot path: a decision round is hundreds of assignments). A batch
        the broker fails transiently is re-sent record by record (``_retry_later``); one it
        refuses for good is dead-lettered record by record."""
        if not records:
            return
        topic = self.topics.name(base_topic)
        limit = MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES
        by_part: dict[int, list[tuple[bytes, bytes | None]]] = {}
        for msg, partition, key in records:
            data = protos.encode(msg)
            if len(data) + len(key or b"") > limit:
                self._refuse(topic, data, partition, f"record of {len(data)} bytes exceeds the {MAX_RECORD_BYTES}-byte record limit")
                continue
            by_part.setdefault(partition, []).append((data, key))
        batched = 0
        for partition, items in by_part.items():
            k = 0
            while k < len(items):
                batch, start = self.producer.create_batch(), k
                while k < len(items) and batch.append(key=items[k][1], value=items[k][0], timestamp=None) is not None:
                    k += 1
                if k == start:  # not even one record fits an empty batch: send it on its own
                    await self.send_raw(base_topic, items[k][0], partition=partition, key=items[k][1])
                    k += 1
                    continue
                await self._send_batch(topic, partition, batch, items[start:k])
                batched += k - start
        if self.metrics is not None and batched:
            self.metrics.records_sent.labels(base_topic).inc(batched)

    async def _send_batch(self, topic: str, partition: int, batch, items: list[tuple[bytes, bytes | None]]) -> None:
        try:
            fut = await self.producer.send_batch(batch, topic, partition=partition)
        except KafkaError as e:
            self._batch_failed(topic, partition, items, e)
            return
        self._pending.add(fut)
        fut.add_done_callback(lambda f, t=topic, p=partition, it=items: self._batch_done(f, t, p, it))
        self.sent += len(items)

    def _batch_done(self, fut: asyncio.Future, topic: str, partition: int, items) -> None:
        self._pending.discard(fut)
        if fut.cancelled():
            return
        err = fut.exception()
        if err is not None:
            self._batch_failed(topic, partition, items, err)

    def _batch_failed(self, topic: str, partition: int, items, err: BaseException) -> None:
        for data, key in items:
            if is_transient(err):
                self._retry_later(topic, data, partition, key, err)
            else:
                self._refuse(topic, data, partition, f"refused by the broker on send: {err.__class__.__name__} {err}".strip())

    def _done(self, fut: asyncio.Future, topic: str, data: bytes, partition: int | None, key: bytes | None) -> None:
        self._pending.discard(fut)
        if fut.cancelled():
            return
        err = fut.exception()
        if err is None:
            return
        if is_transient(err):
            self._retry_later(topic, data, partition, key, err)
            return
        self._refuse(topic, data, partition, f"refused by the broker on send: {err.__class__.__name__} {err}".strip())

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry_later(self, topic: str, data: bytes, partition: int | None, key: bytes | None, err: BaseException) -> None:
        self.retried += 1
        self._spawn(self._resend(topic, data, partition, key, err))

    async def _resend(self, topic: str, data: bytes, partition: int | None, key: bytes | None, first: BaseException) -> None:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

        try:
            async for attempt in AsyncRetrying(wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
                                               stop=stop_after_delay(RETRY_FOR_S), reraise=True,
                                               retry=retry_if_exception(is_transient)):
                with attempt:
                    await asyncio.sleep(0)
                    fut = await self.producer.send(topic, data, partition=partition, key=key)
                    await fut
        except Exception as e:  # permanent, or still failing after RETRY_FOR_S
            why = "still failing after retries" if is_transient(e) else "refused by the broker on retry"
            self._refuse(topic, data, partition, f"{why}: {e.__class__.__name__} {e} (first: {first.__class__.__name__})")

    def _refuse(self, topic: str, data: bytes, partition: int | None, reason: str) -> None:
        self.refused += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(self.topics.base(topic), "refused").inc()
        if self.topics.base(topic) == DEAD_LETTERS:
            print(f"error: a dead letter was refused too ({reason}); dropped", file=sys.stderr)
            return
        dl = protos.dead_letter(self.topics.base(topic), data, reason, partition=partition if partition is not None else -1,
                                source=self.source, now_s=max(0.0, self._now()))
        self._spawn(self.send(DEAD_LETTERS, dl))

    async def dead_letter(self, base_topic: str, data: bytes | None, reason: str, partition: int = -1, offset: int = -1,
                          kind: str = "unprocessable") -> None:
        """Dead-letter an incoming record: ``kind`` ``invalid`` (it did not decode) or ``unprocessable``."""
        if self.metrics is not None:
            self.metrics.dead_letters.labels(base_topic, kind).inc()
        dl = protos.dead_letter(base_topic, data, reason, partition=partition, offset=offset,
                                source=self.source, now_s=max(0.0, self._now()))
        await self.send(DEAD_LETTERS, dl)

    async def flush(self) -> None:
        """Wait until every record sent so far is acknowledged, re-sent or dead-lettered."""
        await self.producer.flush()
        while self._pending or self._tasks:
            await asyncio.gather(*list(self._pending), *list(self._tasks), return_exceptions=True)
            await asyncio.sleep(0)  # let dead-letter tasks scheduled by callbacks run
            await self.producer.flush()


@dataclass(frozen=True, slots=True)
class Received:
    """A valid message with where it came from."""

    topic: str  # base topic name
    partition: int
    offset: int
    msg: Message
    timestamp_ms: int


#: per consumer: partition -> (next offset expected, the gap start already re-read once)
_EXPECTED: "weakref.WeakKeyDictionary[AIOKafkaConsumer, dict[TopicPartition, list[int]]]" = weakref.WeakKeyDictionary()
#: gaps seen in this process: (topic, partition, expected offset, offset delivered instead)
GAPS: list[tuple[str, int, int, int]] = []


def _gap_free(consumer: AIOKafkaConsumer, tp: TopicPartition, records: list) -> list:
    """The records up to the first offset gap. Without transactions or compaction
    (phaser uses neither) a partition's offsets are contiguous, so a delivered
    offset beyond the one expected means records the fetch skipped. The first
    time a gap shows, the consumer is sought back to the missing offset and the
    rest of the batch dropped (it is fetched again); if the same gap shows again
    the broker really holds nothing there (e.g. another producer's transaction
    markers) and it is accepted. Each gap is reported on stderr and in ``GAPS``."""
    state = _EXPECTED.setdefault(consumer, {})
    want, retried = state.get(tp, (None, None))
    for i, r in enumerate(records):
        if want is not None and r.offset > want and retried != want:
            GAPS.append((tp.topic, tp.partition, want, r.offset))
            print(f"warning: {tp.topic}[{tp.partition}] delivered offset {r.offset} where {want} was next; "
                  f"re-reading from {want}", file=sys.stderr)
            state[tp] = (want, want)
            consumer.seek(tp, want)
            return records[:i]
        want = r.offset + 1
    state[tp] = (want, retried)
    return records


async def fetch(consumer: AIOKafkaConsumer, publisher: Publisher, timeout_s: float, stats=None
                ) -> tuple[list[Received], dict[TopicPartition, int]]:
    """Poll once (waiting at most ``timeout_s``), decode every record, dead-letter
    the invalid ones. Returns the valid messages in log order per partition and
    the next offset per partition (to commit once they are handled). A batch
    that skips offsets is cut at the gap and re-read (``_gap_free``).
    ``stats``: a ``services.metrics.ConsumerStats`` counting records and lag."""
    batches = await consumer.getmany(timeout_ms=int(max(0.0, min(timeout_s, MAX_POLL_S)) * 1000))
    out: list[Received] = []
    positions: dict[TopicPartition, int] = {}
    topics = publisher.topics
    for tp, records in batches.items():
        base = topics.base(tp.topic)
        records = _gap_free(consumer, tp, records)
        for r in records:
            try:
                msg = protos.decode(base, r.value)
            except protos.DecodeError as e:
                await publisher.dead_letter(base, r.value, e.reason, partition=r.partition, offset=r.offset,
                                            kind="invalid")
                continue
            out.append(Received(base, r.partition, r.offset, msg, r.timestamp))
        if records:
            positions[tp] = records[-1].offset + 1
            if stats is not None:
                stats.on_fetch(tp, len(records), positions[tp])
    if stats is not None:
        stats.refresh()
    return out, positions
