"""The trainer's Prometheus families, read from ``TrainerCore`` at scrape time
(its counters, the learner's last loss) plus the consumer families of
``services.metrics``:

``phaser_trainer_events_total``, ``phaser_trainer_transitions_total``,
``phaser_trainer_updates_total``, ``phaser_trainer_versions_published_total``,
``phaser_trainer_loss`` (the last TD loss; NaN before the first update),
``phaser_trainer_pending_decisions``, ``phaser_trainer_pending_joins``.
The canary guard's verdicts are the router's (it runs the guard):
``phaser_router_policy_events_total{kind}``."""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics import Metrics


class _TrainerCollector:
    def __init__(self, core):
        self.core = core

    def describe(self):
        return []

    def collect(self):
        st = self.core.stats()
        for key, name, doc in (("events", "events", "Messages the trainer consumed."),
                               ("transitions", "transitions", "Transitions built and stored for learning."),
                               ("updates", "updates", "Gradient updates."),
                               ("published", "versions_published", "Policy versions published to the store.")):
            yield CounterMetricFamily(f"phaser_trainer_{name}", doc, value=st[key])
        for key, doc in (("pending_decisions", "Decisions waiting for their reward."),
                         ("pending_joins", "Assignments waiting for their completion.")):
            g = GaugeMetricFamily(f"phaser_trainer_{key}", doc)
            g.add_metric([], st[key])
            yield g
        g = GaugeMetricFamily("phaser_trainer_loss", "The learner's last TD loss.")
        g.add_metric([], float(self.core.learner.last_loss))
        yield g


def trainer_metrics(metrics: Metrics, core) -> None:
    metrics.registry.register(_TrainerCollector(core))
