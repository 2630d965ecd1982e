"""The trainer's Prometheus families, read from ``TrainerCore`` at scrape time
(its counters, the learner's last loss) plus the consumer families of
``services.metrics``:

``phaser_trainer_events_total``, ``phaser_trainer_transitions_total``,
``phaser_trainer_updates_total``, ``phaser_trainer_versions_published_total``,
``phaser_trainer_loss`` (the last TD loss; NaN before the first update),
``phaser_trainer_pending_decisions``, ``phaser_trainer_pending_joins``.
With the twin (``--twin-profile``): ``phaser_trainer_twin_window`` (requests
in its window), ``phaser_trainer_twin_rounds_total{outcome}`` (won: published;
lost: judged, did not win; fit: the fitted profile was poor, nothing trained;
window: too few requests, nothing trained; failed: the round raised),
``phaser_trainer_twin_scale{instance}`` and
``phaser_trainer_twin_fit_error{instance,metric}`` (the fitted time scale and
its relative error on median TBT / TTFT), ``phaser_trainer_twin_gain_pct``
(the last judged candidate vs the incumbent in held-out replays) and
``phaser_trainer_twin_last_info{outcome,reason}`` (one series: the last round).
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
        twin = self.core.twin
        if twin is None:
            return
        g = GaugeMetricFamily("phaser_trainer_twin_window", "Requests in the twin's window.")
        g.add_metric([], float(len(twin)))
        yield g
        c = CounterMetricFamily("phaser_trainer_twin_rounds", "Twin rounds by outcome.", labels=["outcome"])
        for outcome in ("won", "lost", "fit", "window", "failed"):
            c.add_metric([outcome], float(self.core.twin_outcomes.get(outcome, 0)))
        yield c
        g = GaugeMetricFamily("phaser_trainer_twin_scale", "The fitted time scale per instance.", labels=["instance"])
        for i, k in enumerate(twin.scales):
            g.add_metric([str(i)], float(k))
        yield g
        g = GaugeMetricFamily("phaser_trainer_twin_fit_error", "Relative error of the fit per instance.",
                              labels=["instance", "metric"])
        for i, e in enumerate(twin.fit_errors):
            if e is not None:
                g.add_metric([str(i), "tbt_p50"], float(e[0]))
                g.add_metric([str(i), "ttft_p50"], float(e[1]))
        yield g
        g = GaugeMetricFamily("phaser_trainer_twin_gain_pct", "The last judged candidate's gain over the incumbent.")
        g.add_metric([], float(self.core.twin_last_gain_pct))
        yield g
        if self.core.twin_last:
            g = GaugeMetricFamily("phaser_trainer_twin_last_info", "The last twin round (value 1).",
                                  labels=["outcome", "reason"])
            g.add_metric([self.core.twin_last_outcome, self.core.twin_last[:200]], 1.0)
            yield g


def trainer_metrics(metrics: Metrics, core) -> None:
    metrics.registry.register(_TrainerCollector(core))
