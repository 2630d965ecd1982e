"""Prometheus metrics of a phaser service (``prometheus_client``).

Every service (router, worker, trainer, load generator, monitor) builds one
``Metrics``: its own registry (several services may share a process in tests),
the families every Kafka service has, and an HTTP endpoint started by
``serve(port)`` — ``--metrics-port`` / ``PHASER_METRICS_PORT``: absent = off,
0 = a free port; the port is printed at start (``"<service>: metrics on
http://HOST:PORT/metrics"``) and written to the ready directory under
``phaser up``.

Conventions (decisions): names start ``phaser_``, base units (seconds,
records, tokens), counters end ``_total``, latencies are histograms. Request
latencies (TTFT, ITL, E2E, queue time, router wait) are in **stack seconds**
(the simulated engine's clock; equal to wall seconds at ``--time-scale 1``,
always for real engines); the router's decision duration is wall seconds (it
is the router's own CPU time). Per-instance series carry ``instance_index`` (``instance`` is Prometheus' own target label); the
service itself is named by the scrape target (``phaser up --metrics-sd``,
``deploy/prometheus.yml``), not by a label.

Shared families (``Metrics.__init__``):

* ``phaser_consumer_records_total{group,topic}`` — records fetched, valid or not;
* ``phaser_consumer_lag_records{group,topic,partition}`` — end offset (the
  highest of the broker's high watermark and the records fetched) minus the
  group's last committed offset, for exactly the partitions this consumer is
  assigned; before its first commit, minus where it started reading;
* ``phaser_records_sent_total{topic}``, ``phaser_dead_letters_total{topic,kind}``
  (``kind``: ``invalid`` — failed to decode, ``unprocessable`` — decoded but the
  service could not use it, ``refused`` — the broker or the size limit refused
  an outgoing record).
"""

from __future__ import annotations

import os
import sys
import time

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, start_http_server
from prometheus_client.core import HistogramMetricFamily

from phaser.buckets import LATENCY_BOUNDS_S, Buckets

#: stack seconds: TTFT, E2E, queue and router waits (1 ms ... 10 min)
REQUEST_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0,
                     3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
#: wall seconds: one routing decision (1 µs ... 1 s)
DECISION_BUCKETS_S = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
                      0.05, 0.1, 0.25, 1.0)

disable_created_metrics()  # no *_created series: Prometheus 2.x does not use them, dashboards need not filter them


class _MultiBuckets:
    """One histogram family over several ``Buckets`` (one per label set)."""

    def __init__(self, name: str, doc: str, label_names: tuple[str, ...]):
        self.name, self.doc, self.label_names = name, doc, label_names
        self.parts: dict[tuple[str, ...], Buckets] = {}

    def part(self, *labels, bounds=LATENCY_BOUNDS_S) -> Buckets:
        """The ``Buckets`` of one label set (created empty the first time)."""
        key = tuple(str(x) for x in labels)
        b = self.parts.get(key)
        if b is None:
            b = self.parts[key] = Buckets(bounds)
        return b

    def describe(self):
        return [HistogramMetricFamily(self.name, self.doc, labels=list(self.label_names))]

    def collect(self):
        fam = HistogramMetricFamily(self.name, self.doc, labels=list(self.label_names))
        for values, b in list(self.parts.items()):
            fam.add_metric(list(values), [(_le(le), c) for le, c in b.cumulative()], sum_value=b.sum)
        return [fam]


def _le(x: float) -> str:
    return "+Inf" if x == float("inf") else repr(float(x))


class Metrics:
    def __init__(self, service: str):
        self.service = service
        self.registry = CollectorRegistry()
        self.port: int | None = None
        self._server = None
        r = self.registry
        self.consumer_records = Counter("phaser_consumer_records", "Records fetched by this service's consumer.",
                                        ["group", "topic"], registry=r)
        self.consumer_lag = Gauge("phaser_consumer_lag_records",
                                  "End offset minus the group's committed offset, per consumed partition.",
                                  ["group", "topic", "partition"], registry=r)
        self.records_sent = Counter("phaser_records_sent", "Records this service produced.", ["topic"], registry=r)
        self.dead_letters = Counter("phaser_dead_letters", "Records this service dead-lettered, by source topic and kind "
                                    "(invalid, unprocessable, refused).", ["topic", "kind"], registry=r)

    # -- families a service adds --------------------------------------------------
    def counter(self, name: str, doc: str, labels=()) -> Counter:
        return Counter(name, doc, list(labels), registry=self.registry)

    def gauge(self, name: str, doc: str, labels=()) -> Gauge:
        return Gauge(name, doc, list(labels), registry=self.registry)

    def histogram(self, name: str, doc: str, labels=(), buckets=REQUEST_BUCKETS_S) -> Histogram:
        return Histogram(name, doc, list(labels), buckets=buckets, registry=self.registry)

    def bulk_histogram(self, name: str, doc: str, label_names: tuple[str, ...]) -> _MultiBuckets:
        """A histogram filled through ``Buckets`` objects (``.part(*labels)``) by pure code."""
        m = _MultiBuckets(name, doc, label_names)
        self.registry.register(m)
        return m

    # -- the endpoint -----------------------------------------------------------
    def serve(self, port: int | None, host: str = "0.0.0.0") -> int | None:
        """Start ``/metrics`` on ``port`` (0 = a free one); None = off. Prints and returns the port."""
        if port is None:
            return None
        if not 0 <= port <= 65535:
            from phaser.errors import PhaserError

            raise PhaserError(f"--metrics-port must be 0..65535, got {port}")
        try:
            self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            from phaser.errors import PhaserError

            raise PhaserError(f"cannot serve metrics on port {port}: {e.strerror or e}") from None
        self.port = self._server.server_port
        print(f"{self.service}: metrics on http://127.0.0.1:{self.port}/metrics", file=sys.stderr, flush=True)
        ready = os.environ.get("PHASER_READY_DIR")
        if ready:  # phaser up lists every child's endpoint (startup lines, --json, --metrics-sd)
            try:
                with open(os.path.join(ready, f"metrics-{self.service}"), "w") as f:
                    f.write(str(self.port))
            except OSError:
                pass
        return self.port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class ConsumerStats:
    """Records/s and lag of one service's consumer (see the module docstring).
    ``services.kafka.fetch`` and ``Committer`` feed it; ``refresh`` sets the gauges."""

    def __init__(self, metrics: Metrics, group: str, topics, consumer):
        self.m, self.group, self.topics, self.consumer = metrics, group, topics, consumer
        self.committed: dict[TopicPartition, int] = {}
        self.fetched: dict[TopicPartition, int] = {}
        self._next_refresh = 0.0

    async def started(self) -> None:
        """Where each assigned partition starts: the lag base until the first commit."""
        for tp in self.consumer.assignment():
            self.committed[tp] = await self.consumer.position(tp)
            base = self.topics.base(tp.topic)
            self.m.consumer_records.labels(self.group, base)  # series exist from 0: rate() sees the first records
            for kind in ("invalid", "unprocessable"):
                self.m.dead_letters.labels(base, kind)
        self.refresh(force=True)

    def on_fetch(self, tp: TopicPartition, n: int, next_offset: int) -> None:
        self.m.consumer_records.labels(self.group, self.topics.base(tp.topic)).inc(n)
        self.fetched[tp] = max(self.fetched.get(tp, 0), next_offset)

    def on_commit(self, positions: dict) -> None:
        self.committed.update(positions)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next_refresh:
            return
        self._next_refresh = now + 0.5
        for tp in self.consumer.assignment():
            try:
                hw = self.consumer.highwater(tp)
            except Exception:  # not assigned any more
                hw = None
            end = max(hw or 0, self.fetched.get(tp, 0))
            base = self.committed.get(tp, 0)
            self.m.consumer_lag.labels(self.group, self.topics.base(tp.topic), str(tp.partition)).set(max(0, end - base))
