"""The open-loop publisher behind ``phaser load`` (and ``phaser up``): a workload onto ``requests``.

``await publish(workload, bootstrap, time_scale, progress=...) -> report dict``

Schedule. Request ``i`` is handed to the producer at wall time
``t0 + (arrival_i - arrival_0) / time_scale`` and carries
``arrival_s = that scheduled wall time * time_scale`` — the stack clock of
``services.clock`` (``time.time() * time_scale``), so every service agrees on
when it arrived. ``t0`` is taken once the producer is connected. The loop is
open: it never waits for acknowledgements, let alone for the router or the
workers, so the system under test cannot slow it down. When it falls behind
(CPU, or a full producer buffer because the broker stalls) it sends every
overdue request at once — still with its *scheduled* ``arrival_s`` — and the
lag (handoff time − scheduled time) is measured per request and reported.

Exactly once per request id:
* The idempotent producer is tried first; the embedded broker (tansu) fails
  ``InitProducerId`` with ``UnknownError``, so we fall back to a plain producer
  (``services.kafka.open_producer``: acks=1, linger 1 ms) and say so.
* Without idempotence nothing is re-sent blindly: a record whose delivery
  fails after it was handed over (timeout, lost connection) may have been
  written, so it is counted ``failed`` and not re-sent (the router
  de-duplicates on id anyway). A record the broker *refuses*
  (``UnknownError``: its schema registry) is permanent: it is published to
  ``dead-letters`` with the reason and counted ``refused``. Only a handoff
  that timed out inside ``producer.send`` — the record never entered a batch —
  is retried, because it cannot have been written.
* Caveat, stated honestly: aiokafka itself re-sends a *batch* after a
  retriable error (e.g. a dropped connection) within ``request_timeout``;
  with acks=1 on one broker that is the only duplicate path left, and
  downstream de-duplication on request id absorbs it.

Broker unreachable at start: connection is retried with exponential backoff
(0.25 s doubling to 5 s) for up to ``connect_timeout_s``, each attempt
reported through ``progress``; then a ``PhaserError``. A broker that stops
acknowledging mid-run shows up in the progress snapshots (``stalled_s``) and
in the lag figures of the report.

Ids: when ``run_id`` is given every id becomes ``{run_id}-{id}`` so two runs
against one broker never share an id (the router de-duplicates on it).

Measured (``phaser load --embedded --bench-rates 1000,...,50000 --bench-seconds 10``
on the shared 2-core dev machine, load average 4-6 from other work): held
within 1% of schedule up to 25,000 req/s; at 30,000 the broker stopped
draining fast enough and the lag grew to seconds. To keep the schedule, the
publisher pre-encodes nothing it does not have to (one ``orjson.dumps`` per
request, ``arrival_s`` patched into a prepared dict) and freezes existing
objects out of the garbage collector for the run (``gc.freeze``, process-wide,
undone at the end): full collections otherwise paused it by tens of ms.

Topics: ``requests`` and ``dead-letters`` are created if missing
(``ensure_load_topics``), *not* ``assignments``, whose partition count belongs
to the router's ``services.kafka.ensure_topics`` (tansu cannot add partitions
later, so creating it here with the wrong count would break the router).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownError

from phaser.errors import PhaserError
from protos import Request
from services.kafka import DEAD_LETTERS, Publisher, Topics, create_topics, open_producer

#: seconds between progress snapshots
PROGRESS_EVERY_S = 0.1
#: a request counts as late when its handoff lag exceeds this (wall seconds); reported as late_share
ON_TIME_S = 0.01
#: "held within 1% of schedule": achieved rate >= 99% of target and p99 lag <= 1% of the schedule's span
HOLD_TOLERANCE = 0.01
#: an un-acknowledged record older than this (wall s) means the broker is stalling
STALL_S = 1.0


@dataclass
class Snapshot:
    """What the progress bar shows; passed to ``progress`` about every 0.1 s."""

    state: str              # connecting | sending | flushing | done
    requested: int
    handed: int             # handed to the producer
    acked: int
    failed: int
    refused: int
    elapsed_s: float        # wall seconds since t0
    target_rate: float      # req/s (wall) of the schedule
    achieved_rate: float    # handed / elapsed
    lag_s: float            # current lag behind schedule (wall s)
    max_lag_s: float
    stalled_s: float = 0.0  # age of the oldest un-acknowledged record when > STALL_S
    note: str = ""


async def _create_topics(bootstrap: str, topics: Topics) -> None:
    """Only the topics the publisher writes: ``assignments`` is left to the
    router/workers, who know the instance count (its partition count)."""
    await create_topics(bootstrap, {topics.name(b): 1 for b in ("requests", DEAD_LETTERS)})


async def ensure_load_topics(bootstrap: str, topics: Topics = Topics()) -> None:
    """Create ``requests`` and ``dead-letters`` (1 partition each, as services.kafka) if missing."""
    try:
        await _create_topics(bootstrap, topics)
    except KafkaError as e:
        raise PhaserError(f"cannot reach Kafka at {bootstrap}: {e.__class__.__name__} {e}".strip()) from None


async def connect(bootstrap: str, topics: Topics = Topics(), *, connect_timeout_s: float = 60.0,
                  idempotent: bool = True, notify: Callable[[str], None] = lambda s: None) -> tuple[AIOKafkaProducer, bool]:
    """Create the load topics and start a producer, idempotent if the broker allows.

    Returns (producer, idempotent). An unreachable broker is retried with
    exponential backoff for up to ``connect_timeout_s``, then ``PhaserError``
    (``services.kafka.reach``: the connect policy every command shares)."""
    from services.kafka import reach

    async def attempt():
        await _create_topics(bootstrap, topics)
        producer, idem = await open_producer(bootstrap, client_id="phaser-load", idempotent=idempotent)
        if idempotent and not idem:
            notify("broker refused the idempotent producer (InitProducerId); "
                   "using a plain producer that never re-sends a record blindly")
        return producer, idem

    return await reach(bootstrap, attempt, timeout_s=connect_timeout_s, notify=notify)


def _bodies(workload: list[Request], run_id: str | None) -> list[dict]:
    bodies = []
    for r in workload:
        b = r.model_dump(mode="python", exclude_none=True)
        if run_id:
            b["id"] = f"{run_id}-{b['id']}"
            if len(b["id"]) > 256:
                raise PhaserError(f"request id {b['id'][:40]}... is longer than 256 characters; use a shorter run id")
        bodies.append(b)
    if len({b["id"] for b in bodies}) != len(bodies):
        raise PhaserError("workload has duplicate request ids; each id must be sent exactly once")
    return bodies


def _lag_stats(lags: np.ndarray) -> dict[str, float]:
    if lags.size == 0:
        return {"max_lag_s": 0.0, "p99_lag_s": 0.0, "p50_lag_s": 0.0, "mean_lag_s": 0.0, "late_share": 0.0}
    p50, p99 = np.percentile(lags, [50, 99])
    return {"max_lag_s": float(lags.max()), "p99_lag_s": float(p99), "p50_lag_s": float(p50),
            "mean_lag_s": float(lags.mean()), "late_share": float((lags > ON_TIME_S).mean())}


async def publish(workload: list[Request], bootstrap: str, time_scale: float = 1.0, *,
                  progress: Callable[[Snapshot], None] | None = None, topics: Topics = Topics(),
                  run_id: str | None = None, connect_timeout_s: float = 60.0, idempotent: bool = True,
                  stop: asyncio.Event | None = None, wall: Callable[[], float] = time.time) -> dict:
    """Publish ``workload`` open-loop on its schedule; returns the report (see module docstring).

    Report keys: requested, handed (to the producer), sent (acknowledged by
    the broker), failed, refused, duration_s (t0 to the last acknowledgement),
    schedule_s (the workload's span in wall seconds), ack_tail_s (last handoff
    to last acknowledgement), target_rate = (requested - 1) / schedule_s,
    achieved_rate = (handed - 1) / (last handoff - t0), on_schedule ("held
    within 1% of schedule": every request acknowledged, achieved_rate >= 99%
    of target_rate, and 99% of requests handed over no later than 1% of the
    schedule's span — floor 10 ms — after their time), max/p99/p50/mean_lag_s
    (handoff - scheduled time, per request), late_share (lag > 10 ms),
    idempotent, time_scale, topic, run_id, notes. Rates and lags are in
    wall-clock seconds.
    """
    from services.clock import StackClock

    clock = StackClock(time_scale, wall=wall)  # validates the scale
    n = len(workload)
    if n == 0:
        raise PhaserError("nothing to publish: the workload is empty")
    offsets = (np.array([r.arrival_s for r in workload], dtype=float) - workload[0].arrival_s) / time_scale
    if np.any(np.diff(offsets) < 0):
        raise PhaserError("workload is not sorted by arrival_s")
    bodies = _bodies(workload, run_id)
    keys = [b["id"].encode() for b in bodies]
    topic = topics.name("requests")
    notes: list[str] = []
    st = {"acked": 0, "failed": 0, "refused": 0, "last_ack": 0.0, "first_error": ""}

    def emit(state: str, handed: int, t0: float, now: float, lag: float, max_lag: float, note: str = "") -> None:
        if progress is None:
            return
        elapsed = max(0.0, now - t0)
        inflight = handed - st["acked"] - st["failed"] - st["refused"]
        quiet = now - max(st["last_ack"], t0)
        progress(Snapshot(state, n, handed, st["acked"], st["failed"], st["refused"], elapsed, target_rate,
                          handed / elapsed if elapsed > 0 else 0.0, lag, max_lag,
                          quiet if inflight > 0 and quiet > STALL_S else 0.0, note))

    def notify(msg: str, state: str = "connecting", handed: int = 0) -> None:
        notes.append(msg)
        now = wall()
        emit(state, handed, now, now, 0.0, 0.0, msg)

    span = float(offsets[-1])
    target_rate = (n - 1) / span if span > 0 else math.inf
    producer, idem = await connect(bootstrap, topics, connect_timeout_s=connect_timeout_s, idempotent=idempotent,
                                   notify=notify)
    dead = Publisher(producer, topics, source="load", clock_now=clock.now)
    dl_tasks: set[asyncio.Task] = set()

    def on_done(fut: asyncio.Future, data: bytes) -> None:
        if fut.cancelled():
            st["failed"] += 1
            return
        err = fut.exception()
        if err is None:
            st["acked"] += 1
            st["last_ack"] = wall()
        elif isinstance(err, UnknownError):  # refused by the broker (schema): permanent
            st["refused"] += 1
            task = asyncio.get_running_loop().create_task(
                dead.dead_letter("requests", data, f"refused by the broker: {err.__class__.__name__} {err}".strip()))
            dl_tasks.add(task)
            task.add_done_callback(dl_tasks.discard)
        else:  # may have been written: never re-sent blindly
            st["failed"] += 1
            st["first_error"] = st["first_error"] or f"{err.__class__.__name__} {err}".strip()

    lags = np.zeros(n)
    # Long-lived objects (bodies, the workload) are moved out of the collector's view:
    # a full collection over ~10^6 objects would otherwise pause the schedule by tens of ms.
    gc.collect()
    gc.freeze()
    t0 = wall()
    sched = t0 + offsets
    i = 0
    next_emit = t0
    max_lag = 0.0
    try:
        while i < n and not (stop is not None and stop.is_set()):
            now = wall()
            if now >= next_emit:
                emit("sending", i, t0, now, float(lags[i - 1]) if i else 0.0, max_lag)
                next_emit = now + PROGRESS_EVERY_S
            if sched[i] > now:
                delay = min(float(sched[i]) - now, PROGRESS_EVERY_S)
                if stop is not None and delay >= 0.01:  # long gap: wake early on stop
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                else:
                    await asyncio.sleep(delay)
                continue
            burst = 0
            while i < n and sched[i] <= now and burst < 512:  # yield to the sender now and then
                body = bodies[i]
                body["arrival_s"] = float(sched[i]) * time_scale
                data = orjson.dumps(body)
                while True:
                    try:
                        fut = await producer.send(topic, data, key=keys[i])
                        break
                    except KafkaTimeoutError:  # buffer full for request_timeout: never entered a batch, safe to retry
                        notify(f"broker not draining: request {i} waited a full request timeout for buffer space; "
                               "retrying", "sending", i)
                fut.add_done_callback(lambda f, d=data: on_done(f, d))
                done = wall()
                lags[i] = done - sched[i]
                max_lag = max(max_lag, lags[i])
                i += 1
                burst += 1
                now = done
            if burst >= 512:
                await asyncio.sleep(0)
        handed = i
        if handed < n:
            notes.append(f"stopped after {handed} of {n} requests")
        now = wall()
        emit("flushing", handed, t0, now, float(lags[handed - 1]) if handed else 0.0, max_lag)
        flush = asyncio.ensure_future(producer.flush())
        while st["acked"] + st["failed"] + st["refused"] < handed:
            await asyncio.wait([flush], timeout=PROGRESS_EVERY_S)
            emit("flushing", handed, t0, wall(), float(lags[handed - 1]) if handed else 0.0, max_lag)
        await flush
        while dl_tasks:
            await asyncio.gather(*list(dl_tasks), return_exceptions=True)
        await dead.flush()
    finally:
        gc.unfreeze()
        await producer.stop()
    end = st["last_ack"] or wall()
    duration = max(0.0, end - t0)
    sent = st["acked"]
    last_handoff = float(sched[handed - 1] + lags[handed - 1]) if handed else t0
    achieved = (handed - 1) / (last_handoff - t0) if handed > 1 and last_handoff > t0 else 0.0
    if st["first_error"]:
        notes.append(f"first delivery error: {st['first_error']}")
    report = {
        "requested": n, "handed": handed, "sent": sent, "failed": st["failed"], "refused": st["refused"],
        "duration_s": duration, "schedule_s": span, "ack_tail_s": max(0.0, end - last_handoff),
        "target_rate": target_rate if math.isfinite(target_rate) else None, "achieved_rate": achieved,
        **_lag_stats(lags[:handed]),
        "idempotent": idem, "time_scale": time_scale, "topic": topic, "run_id": run_id, "notes": notes,
    }
    report["on_schedule"] = bool(sent == n and report["p99_lag_s"] <= max(ON_TIME_S, HOLD_TOLERANCE * span)
                                 and (not math.isfinite(target_rate) or achieved >= (1 - HOLD_TOLERANCE) * target_rate))
    emit("done", handed, t0, end, 0.0, max_lag)
    return report
