"""The router's Prometheus families.

Counters the ``RouterCore`` keeps anyway (routed, duplicates, re-routed, ...)
and the per-instance view are read at scrape time by a collector (the core
stays free of metrics code); what happens per decision (policy and version,
decision duration, router wait) is observed by the shell loop.

* ``phaser_router_decisions_total{policy,version}``
* ``phaser_router_decision_duration_seconds`` (wall: the decide call's time
  divided over the decisions it made)
* ``phaser_router_wait_seconds`` (stack: arrival to decision, per request)
* ``phaser_router_queue_length``, ``phaser_router_waits_total`` (times the
  head of the queue was held back: the policy waited or no instance was live)
* ``phaser_router_{routed,duplicates,rerouted,diverted,failed,not_served}_total``
* per instance (label ``instance_index``; ``instance`` is Prometheus' scrape target): ``phaser_router_view_outstanding``,
  ``phaser_router_view_kv_used_tokens`` (the router's estimate),
  ``phaser_router_heartbeat_kv_used_tokens`` / ``_running`` / ``_waiting``
  (the last heartbeat: the truth the estimate is checked against),
  ``phaser_router_heartbeat_age_seconds`` (stack), ``phaser_router_instance_up``.
* replicas (``phaser router --replica-id``): ``phaser_router_peer_assignments_total{peer}`` (peers'
  decisions applied to the view), ``phaser_router_peer_lag_seconds`` (stack: a peer decision's age
  when this replica read it — the staleness the simulator's ``replica_delay_s`` models),
  ``phaser_router_peer_late_total`` (peer decisions read after their completion, not applied),
  ``phaser_router_rebalances_total``, ``phaser_router_owned_partitions`` (of ``requests``),
  ``phaser_router_dropped_total`` (queued requests handed back when their partition moved).
"""

from __future__ import annotations

import math

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics import DECISION_BUCKETS_S, REQUEST_BUCKETS_S, Metrics

CORE_COUNTERS = {
    "routed": "Requests routed (every routing, re-routes included).",
    "duplicates": "Request ids delivered again and ignored.",
    "rerouted": "Re-routings after a failover.",
    "diverted": "Decisions moved off a down instance.",
    "failed": "Requests ended with status error after max attempts.",
    "not_served": "Completions seen with status rejected or error.",
    "waits": "Times the head of the router queue was held back (policy wait, no live instance).",
    "peer_late": "Peer replicas' decisions read after the request completed (not applied to the view).",
    "dropped": "Queued requests handed back when their requests partition moved to another replica.",
}


class _RouterCollector:
    def __init__(self, core, clock):
        self.core, self.clock = core, clock

    def describe(self):
        return []  # families are built at collect time; nothing to pre-register

    def collect(self):
        core = self.core
        for name, doc in CORE_COUNTERS.items():
            yield CounterMetricFamily(f"phaser_router_{name}", doc, value=getattr(core, name, 0))
        q = GaugeMetricFamily("phaser_router_queue_length", "Requests in the router queue.")
        q.add_metric([], len(core.queue))
        yield q
        now = self.clock.now()
        fams = {
            "view_outstanding": ("Requests the router has outstanding on the instance (exact).", lambda v: v.outstanding),
            "view_kv_used_tokens": ("The router's estimate of the instance's KV tokens in use.", lambda v: v.kv_used_tokens_est),
            "heartbeat_kv_used_tokens": ("KV tokens in use per the instance's last heartbeat.", lambda v: v.hb_kv_used_tokens),
            "heartbeat_running": ("Running requests per the last heartbeat.",
                                  lambda v: v.hb_running_prefill + v.hb_running_decode),
            "heartbeat_waiting": ("Waiting requests per the last heartbeat.", lambda v: v.queue_len),
            "heartbeat_age_seconds": ("Stack seconds since the instance's last heartbeat reached the router.",
                                      lambda v: now - v.hb_received_s if math.isfinite(v.hb_received_s) else math.nan),
        }
        insts = list(core.view.instances)
        for key, (doc, get) in fams.items():
            g = GaugeMetricFamily(f"phaser_router_{key}", doc, labels=["instance_index"])
            for v in insts:
                g.add_metric([str(v.index)], float(get(v)))
            yield g
        up = GaugeMetricFamily("phaser_router_instance_up", "1 if the router routes to the instance (failover).",
                               labels=["instance_index"])
        h = core.health
        for v in insts:
            up.add_metric([str(v.index)], 1.0 if h is None or h.live(v.index) else 0.0)
        yield up


class RouterMetrics:
    def __init__(self, metrics: Metrics, core, clock):
        self.m = metrics
        self.decisions = metrics.counter("phaser_router_decisions", "Routing decisions by serving policy and version.",
                                         ("policy", "version"))
        self.duration = metrics.histogram("phaser_router_decision_duration_seconds",
                                          "Wall seconds per routing decision.", buckets=DECISION_BUCKETS_S)
        self.wait = metrics.histogram("phaser_router_wait_seconds", "Stack seconds from arrival to the routing decision.",
                                      buckets=REQUEST_BUCKETS_S)
        self.policy_events = metrics.counter("phaser_router_policy_events",
                                             "Policy version events the router published (canary, promoted, rolled_back, ...).",
                                             ("kind",))
        for k in ("canary", "promoted", "rolled_back", "refused"):
            self.policy_events.labels(k)
        self.peer = metrics.counter("phaser_router_peer_assignments", "Peer replicas' decisions applied to the view.",
                                    ("peer",))
        self.peer_lag = metrics.histogram("phaser_router_peer_lag_seconds",
                                          "Stack seconds from a peer replica's decision to this replica reading it.",
                                          buckets=REQUEST_BUCKETS_S)
        self.rebalances = metrics.counter("phaser_router_rebalances", "Times requests partitions moved away from this replica.")
        self.owned = metrics.gauge("phaser_router_owned_partitions", "Partitions of requests this replica reads.")
        metrics.registry.register(_RouterCollector(core, clock))
        policy = getattr(core.policy, "name", None)
        if policy is not None and core.swap is None:  # the series exists from the start (rate() sees its first decision)
            self.decisions.labels(policy, str(int(getattr(core.policy, "version", 0))))

    def on_peer(self, a, now: float) -> None:
        """A peer replica's decision read (``RouterCore.on_peer_assignment``)."""
        self.peer.labels(a.router or "-").inc()
        self.peer_lag.observe(max(0.0, now - a.decided_s))

    def on_decisions(self, assignments, wall_s: float) -> None:
        if not assignments:
            return
        per = wall_s / len(assignments)
        for a in assignments:
            self.decisions.labels(a.policy, str(a.policy_version)).inc()
            self.duration.observe(per)
            self.wait.observe(a.router_wait_s)
