"""The monitor: per-topic message rates, per-consumer-group lag and rolling
latency percentiles from ``completions``.

``MonitorCore`` is the functional core (records and times passed in);
``run_monitor`` reads every partition of every topic from the beginning with no
consumer group (it must not disturb anyone's offsets) and prints a snapshot every
``interval`` seconds — a rich table on a terminal, one plain line per row
otherwise.

Decisions:

* **Rate** is counted from the records' own timestamps (producer create time),
  over the last ``RATE_WINDOW_S`` wall seconds, so it is right even while the
  monitor catches up on an old log.
* **Lag** of a group on a partition = (highest offset *seen* + 1) − the group's
  committed offset; the broker's high watermark is not used (tansu's lags the
  log). Committed offsets are read with ``AIOKafkaConsumer(group_id).committed``
  (the admin client's group-offsets call breaks tansu's connection). A group
  that never committed anything (e.g. ``phaser-trainer`` in a run without a
  trainer) has no lag: it is shown as ``-`` (``None`` in the snapshot), not as
  the whole topic. Within a group that has committed, a partition it has not
  committed yet counts from offset 0.
* **Latency percentiles** are over the last ``LATENCY_WINDOW`` completions
  (TTFT, mean TBT, E2E, router wait, in stack seconds).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from phaser.errors import PhaserError

from services.kafka_security import client_options

import protos
from protos.messages import TOPICS
from services.lifecycle import mark_ready
from services.kafka import STOP_FLUSH_S, Topics, bounded, Pace, partition_count, start_consumer, stop_consumer

RATE_WINDOW_S = 5.0
#: --once: wall seconds to read up to the end offsets before printing what was read
ONCE_TIMEOUT_S = 60.0
#: wall seconds a monitor keeps retrying a broker that went away before it exits (1 line, code 2)
BROKER_GONE_S = 30.0
#: wall seconds a read of the groups' committed offsets may take before the broker counts as gone
COMMITTED_TIMEOUT_S = 10.0
LATENCY_WINDOW = 1000
#: consumer group -> the base topics it commits (services.router, services.worker, policy_trainer.service)
GROUPS: dict[str, tuple[str, ...]] = {
    "phaser-router": ("requests", "completions", "instance-status"),
    "phaser-worker": ("assignments",),
    "phaser-trainer": ("assignments", "completions", "instance-status"),
}
LATENCY_FIELDS = ("ttft_s", "tbt_mean_s", "e2e_s", "router_wait_s")


@dataclass
class Snapshot:
    rates: dict[str, float]  # topic -> messages per wall second
    totals: dict[str, int]  # topic -> records seen
    lag: dict[str, int | None]  # group -> records behind; None: the group never committed
    lag_by_topic: dict[str, dict[str, int]]  # group -> base topic -> records behind
    latency: dict[str, dict[str, float]]  # field -> {p50, p90, p99}
    completions: int
    #: instance -> its last heartbeat: running, waiting, kv_used (fraction), health
    instances: dict[int, dict] = field(default_factory=dict)
    #: policy versions: serving (last promoted/pinned/rolled-back-to), canary (in flight), last event
    policy: dict = field(default_factory=dict)


@dataclass
class MonitorCore:
    rate_window_s: float = RATE_WINDOW_S
    latency_window: int = LATENCY_WINDOW
    high: dict[tuple[str, int], int] = field(default_factory=dict)  # (base topic, partition) -> next offset
    totals: dict[str, int] = field(default_factory=dict)
    _stamps: dict[str, deque] = field(default_factory=dict)
    _lat: dict[str, deque] = field(default_factory=dict)
    completions: int = 0
    instances: dict[int, dict] = field(default_factory=dict)
    policy: dict = field(default_factory=dict)

    def on_record(self, topic: str, partition: int, offset: int, ts_wall: float, value: bytes | None) -> None:
        key = (topic, partition)
        self.high[key] = max(self.high.get(key, 0), offset + 1)
        self.totals[topic] = self.totals.get(topic, 0) + 1
        self._stamps.setdefault(topic, deque()).append(ts_wall)
        if topic not in ("instance-status", "policy-updates", "completions"):
            return
        try:
            msg = protos.decode(topic, value)
        except protos.DecodeError:  # counted above; the services dead-letter it
            return
        if topic == "instance-status":
            self._on_status(msg)
        elif topic == "policy-updates":
            self._on_policy(msg)
        else:
            self.completions += 1
            for f in LATENCY_FIELDS:
                self._lat.setdefault(f, deque(maxlen=self.latency_window)).append(getattr(msg, f))

    def _on_status(self, st) -> None:
        self.instances[st.instance] = {
            "running": st.running_prefill + st.running_decode, "waiting": st.waiting,
            "kv_used": st.kv_blocks_used / st.kv_blocks_total, "health": st.health, "profile": st.profile}

    def _on_policy(self, u) -> None:
        p = self.policy
        if u.kind == "canary":
            p["canary"] = u.version
        elif u.kind in ("promoted", "pinned"):
            p["serving"], p["canary"] = u.version, None
            p["pinned"] = u.kind == "pinned"
        elif u.kind == "rolled_back":
            p["canary"] = None
            if "to_version" in u.stats:
                p["serving"] = int(u.stats["to_version"])
        elif u.kind == "published":
            p["latest_published"] = u.version
        p["last_event"] = f"{u.kind} v{u.version}" + (f": {u.reason}" if u.reason else "")
        p["rollbacks"] = p.get("rollbacks", 0) + (u.kind == "rolled_back")

    def snapshot(self, now_wall: float, committed: dict[str, dict[tuple[str, int], int]]) -> Snapshot:
        rates = {}
        for t in TOPICS:
            q = self._stamps.get(t, deque())
            while q and q[0] < now_wall - self.rate_window_s:
                q.popleft()
            rates[t] = len(q) / self.rate_window_s
        lag, by_topic = {}, {}
        for g, offsets in committed.items():
            per = by_topic[g] = {}
            if not offsets:  # never committed: no consumer of this group has run
                lag[g] = None
                continue
            # only topics the group commits: router replicas commit `requests` as `phaser-router` and
            # their views (completions, instance-status) as `phaser-router-<id>`, whose lag is not the group's
            mine = {base for base, _ in offsets}
            for k, hi in self.high.items():
                if k[0] in GROUPS.get(g, ()) and k[0] in mine:
                    per[k[0]] = per.get(k[0], 0) + max(0, hi - offsets.get(k, 0))
            lag[g] = sum(per.values())
        latency = {}
        for f in LATENCY_FIELDS:
            vals = self._lat.get(f)
            if vals:
                p50, p90, p99 = np.percentile(np.fromiter(vals, float), [50, 90, 99])
                latency[f] = {"p50": float(p50), "p90": float(p90), "p99": float(p99)}
        return Snapshot(rates, {t: self.totals.get(t, 0) for t in TOPICS}, lag, by_topic, latency, self.completions,
                        {i: dict(v) for i, v in sorted(self.instances.items())}, dict(self.policy))


def snapshot_dict(s: Snapshot) -> dict:
    """The snapshot as JSON-ready data: rates per wall second, lags in records, latencies in stack seconds (``_s``)."""
    return {"rates_per_s": s.rates, "totals": s.totals, "lag": s.lag, "lag_by_topic": s.lag_by_topic,
            "latency_s": s.latency, "completions": s.completions, "instances": {str(i): v for i, v in s.instances.items()},
            "policy": s.policy}


def _lag(v: int | None) -> str:
    return "-" if v is None else str(v)


def render_plain(s: Snapshot) -> str:
    rates = " ".join(f"{t}={s.rates[t]:.1f}/s" for t in TOPICS)
    lag = " ".join(f"{g}={_lag(v)}" for g, v in s.lag.items())
    lat = " ".join(f"{f[:-2]}(p50/p90/p99)={v['p50']:.3f}/{v['p90']:.3f}/{v['p99']:.3f}s" for f, v in s.latency.items())
    return f"rate {rates} | lag {lag} | completions={s.completions} {lat}".rstrip()


def render_table(s: Snapshot):
    from rich.table import Table

    t = Table(title="phaser monitor", expand=False)
    t.add_column("what")
    t.add_column("value", justify="right")
    t.add_column("detail", justify="right")
    for topic in TOPICS:
        t.add_row(f"topic {topic}", f"{s.rates[topic]:.1f}/s", f"{s.totals[topic]} total")
    for g, v in s.lag.items():
        t.add_row(f"lag {g}", _lag(v), "records" if v is not None else "never committed")
    for f, v in s.latency.items():
        t.add_row(f"{f[:-2]} p50/p90/p99", f"{v['p50']:.3f}s", f"{v['p90']:.3f}s / {v['p99']:.3f}s")
    t.add_row("completions", str(s.completions), f"window {LATENCY_WINDOW}")
    for i, v in s.instances.items():
        t.add_row(f"instance {i}", f"{v['running']} running", f"{v['waiting']} waiting, KV {v['kv_used']:.0%}"
                  + ("" if v["health"] == "ok" else f", {v['health']}"))
    if s.policy:
        p = s.policy
        t.add_row("policy", f"v{p['serving']}" if p.get("serving") is not None else "fallback",
                  (f"canary v{p['canary']}, " if p.get("canary") is not None else "") + str(p.get("last_event", "")))
    return t


async def _committed(bootstrap: str, topics: Topics, tps: list[TopicPartition], consumers: dict) -> dict:
    out: dict[str, dict[tuple[str, int], int]] = {}
    for g, bases in GROUPS.items():
        c = consumers.get(g)
        if c is None:
            c = consumers[g] = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=topics.prefix + g, **client_options(),
                                                enable_auto_commit=False, client_id="phaser-monitor")
            await c.start()
        offs = {}
        for tp in tps:
            base = topics.base(tp.topic)
            if base in bases:
                o = await c.committed(tp)
                if o is not None and o >= 0:
                    offs[(base, tp.partition)] = o
        out[g] = offs
    return out


async def run_monitor(bootstrap: str, topics: Topics = Topics(), interval: float = 2.0, duration: float | None = None,
                      once: bool = False, out=None, stop: asyncio.Event | None = None, metrics=None,
                      as_json: bool = False, reconnect_s: float = None) -> Snapshot:
    """``metrics``: a ``services.metrics.Metrics`` the snapshots are exported to; ``as_json``: one
    JSON object per snapshot (``snapshot_dict``) instead of the table/lines; ``reconnect_s``: how long
    a broker that went away is retried (default ``BROKER_GONE_S``) before a one-line error."""
    reconnect_s = BROKER_GONE_S if reconnect_s is None else reconnect_s
    out = out or sys.stdout
    exported = None
    if metrics is not None:
        from services.metrics.monitor import MonitorMetrics

        exported = MonitorMetrics(metrics)
    stop = stop or asyncio.Event()
    core = MonitorCore()
    tps, missing = [], []
    for base in TOPICS:
        n = await partition_count(bootstrap, topics.name(base))
        tps += [(topics.name(base), p) for p in range(n)]
        if n == 0:
            missing.append(topics.name(base))
    if not tps:
        raise PhaserError(f"none of phaser's topics exist on {bootstrap} with topic prefix {topics.prefix!r} "
                          f"(looked for {', '.join(missing)}): is a stack running there with this --topic-prefix? "
                          "`phaser up` prints both at start")
    if missing:
        print(f"monitor: not on {bootstrap} (yet): {', '.join(missing)}; showing the others", file=sys.stderr)
    consumer = await start_consumer(bootstrap, tps, group_id=None, client_id="phaser-monitor", pace=Pace.paced())
    group_consumers: dict = {}
    tp_objs = [TopicPartition(t, p) for t, p in tps]
    live = None
    if not once and not as_json and out.isatty():
        from rich.live import Live

        live = Live(refresh_per_second=2, transient=False)
        live.start()
    start = time.monotonic()
    snap = None
    mark_ready("monitor")
    lost_since = None
    try:
        ends = await consumer.end_offsets(tp_objs) if once else {}
        while not stop.is_set():
            deadline = time.monotonic() + (ONCE_TIMEOUT_S if once else interval)
            try:
                while True:  # read until the interval is over (with --once: up to the end offsets seen at start)
                    wait = 0.5 if once else max(0.05, deadline - time.monotonic())
                    batches = await consumer.getmany(timeout_ms=int(wait * 1000))
                    for tp, recs in batches.items():
                        base = topics.base(tp.topic)
                        for r in recs:
                            core.on_record(base, r.partition, r.offset, r.timestamp / 1000.0, r.value)
                    if once and all([await consumer.position(tp) >= ends[tp] for tp in tp_objs]):
                        break  # positions, not offsets seen: transaction markers take offsets on Apache Kafka
                    if time.monotonic() >= deadline or stop.is_set():
                        break
                committed = await asyncio.wait_for(_committed(bootstrap, topics, tp_objs, group_consumers),
                                                   min(COMMITTED_TIMEOUT_S, max(1.0, reconnect_s)))  # aiokafka retries a dead coordinator forever
            except (KafkaError, asyncio.TimeoutError) as e:  # the broker went away: say so once, keep trying
                now = time.monotonic()
                if lost_since is None:
                    lost_since = now
                    print(f"monitor: lost the broker at {bootstrap} ({e.__class__.__name__}); retrying for "
                          f"{reconnect_s:.0f}s", file=sys.stderr, flush=True)
                if once or now - lost_since >= reconnect_s:
                    raise PhaserError(f"the broker at {bootstrap} is gone ({e.__class__.__name__}); monitor stopped") from None
                await asyncio.sleep(1.0)
                continue
            if lost_since is not None:
                print(f"monitor: broker back after {time.monotonic() - lost_since:.0f}s", file=sys.stderr, flush=True)
                lost_since = None
            if once and time.monotonic() >= deadline:
                print(f"monitor: read for {ONCE_TIMEOUT_S:.0f}s without reaching the end of every topic; "
                      "the snapshot covers what was read", file=sys.stderr)
            snap = core.snapshot(time.time(), committed)
            if exported is not None:
                exported.snap = snap
            if as_json:
                print(orjson.dumps(snapshot_dict(snap)).decode(), file=out, flush=True)
            elif live is not None:
                live.update(render_table(snap))
            else:
                print(render_plain(snap), file=out, flush=True)
            if once or (duration is not None and time.monotonic() - start >= duration):
                break
    finally:
        if live is not None:
            live.stop()
        await bounded(stop_consumer(consumer), STOP_FLUSH_S, "stopping the consumer")
        for c in group_consumers.values():
            await bounded(stop_consumer(c), STOP_FLUSH_S, "stopping a group reader")
    return snap
