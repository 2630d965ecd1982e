"""The load generator's Prometheus families, from the publisher's progress
snapshots (``load_generator.publisher.Snapshot``, about every 0.1 s):

``phaser_load_requests_handed_total`` (to the producer),
``phaser_load_requests_sent_total`` (acknowledged by the broker),
``phaser_load_requests_failed_total``, ``phaser_load_requests_refused_total``,
``phaser_load_requested`` (the workload's size), ``phaser_load_target_rate``
(requests per wall second of the schedule), ``phaser_load_lag_seconds`` (wall
seconds behind the schedule now), ``phaser_load_max_lag_seconds``."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics import Metrics


class LoadMetrics:
    def __init__(self, metrics: Metrics):
        self.snap = None
        self.base = {"handed": 0, "acked": 0, "failed": 0, "refused": 0}  # earlier publish() calls of this process
        metrics.registry.register(self)

    def progress(self, snap) -> None:
        """Pass as (or call from) ``publish(progress=...)``."""
        if self.snap is not None and snap.handed < self.snap.handed:  # a new publish() run: keep the totals monotonic
            self.base = {k: self.base[k] + getattr(self.snap, k) for k in self.base}
        self.snap = snap

    def describe(self):
        return []

    def collect(self):
        s = self.snap
        for key, name, doc in (("handed", "handed", "Requests handed to the producer."),
                               ("acked", "sent", "Requests acknowledged by the broker."),
                               ("failed", "failed", "Requests whose send failed."),
                               ("refused", "refused", "Requests the broker refused.")):
            yield CounterMetricFamily(f"phaser_load_requests_{name}", doc,
                                      value=self.base[key] + (getattr(s, key) if s is not None else 0))
        for name, doc, get in (("requested", "Requests in the workload being published.", lambda s: s.requested),
                               ("target_rate", "Requests per wall second of the schedule.", lambda s: s.target_rate),
                               ("lag_seconds", "Wall seconds the publisher is behind its schedule.", lambda s: s.lag_s),
                               ("max_lag_seconds", "Largest lag behind the schedule so far.", lambda s: s.max_lag_s)):
            g = GaugeMetricFamily(f"phaser_load_{name}", doc)
            g.add_metric([], float(get(s)) if s is not None else 0.0)
            yield g
