"""The monitor's Prometheus families, from its latest snapshot
(``services.monitor.Snapshot``): what the broker holds, independent of any
one service's view.

``phaser_monitor_topic_records_total{topic}`` (records seen on the topic),
``phaser_monitor_group_lag_records{group,topic}`` (a consumer group's lag,
summed over the partitions it consumes; absent while the group never
committed), ``phaser_monitor_completions_total``."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics import Metrics


class MonitorMetrics:
    def __init__(self, metrics: Metrics):
        self.snap = None
        metrics.registry.register(self)

    def describe(self):
        return []

    def collect(self):
        s = self.snap
        t = CounterMetricFamily("phaser_monitor_topic_records", "Records seen on each topic.", labels=["topic"])
        lag = GaugeMetricFamily("phaser_monitor_group_lag_records", "Records a consumer group is behind, per topic.",
                                labels=["group", "topic"])
        done = CounterMetricFamily("phaser_monitor_completions", "Completions seen.", value=s.completions if s else 0)
        if s is not None:
            for topic, n in s.totals.items():
                t.add_metric([topic], n)
            for g, per in s.lag_by_topic.items():
                if s.lag.get(g) is None:
                    continue
                for topic, n in per.items():
                    lag.add_metric([g, topic], n)
        return [t, lag, done]
