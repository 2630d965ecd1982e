"""The worker's Prometheus families (label ``instance_index``; Prometheus' own ``instance`` is the scrape target).

From each completion it publishes (stack seconds):
``phaser_request_ttft_seconds``, ``phaser_request_e2e_seconds``,
``phaser_request_queue_seconds`` (admission wait in the engine),
``phaser_request_tpot_seconds`` (per-request mean time per output token),
``phaser_worker_completions_total{instance_index,status}``,
``phaser_worker_preemptions_total``, ``phaser_worker_{prompt,output}_tokens_total``.

``phaser_request_itl_seconds`` — the inter-token latency of **every token**
(not per-request means), counted by the engine itself into
``phaser.buckets.Buckets`` (simulated: each decode iteration's gap for every
request in it; real engines: every gap between streamed chunks).

From each heartbeat (what the router also sees; for real engines, read from
the engine's own telemetry): ``phaser_worker_running{instance_index,phase}``,
``phaser_worker_waiting``, ``phaser_worker_kv_used_blocks``,
``phaser_worker_kv_total_blocks``, ``phaser_worker_kv_usage_ratio``,
``phaser_worker_instance_healthy``.

Read from the core at scrape time: ``phaser_worker_{duplicates,stale,rejected,
cancelled,skewed}_total`` and ``phaser_worker_in_flight``.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from services.metrics import Metrics

CORE_COUNTERS = {
    "duplicates": "Assignments delivered again and ignored.",
    "stale": "Completions dropped because the request had been re-routed (fencing).",
    "rejected": "Requests rejected (longer than the instance's KV capacity or context).",
    "cancelled": "Requests cancelled by a fence notice before they finished.",
    "skewed": "Assignments whose arrival_s was ahead of the worker's clock (clamped).",
}


class _WorkerCollector:
    def __init__(self, core):
        self.core = core

    def describe(self):
        return []

    def collect(self):
        for name, doc in CORE_COUNTERS.items():
            yield CounterMetricFamily(f"phaser_worker_{name}", doc, value=getattr(self.core, name, 0))
        g = GaugeMetricFamily("phaser_worker_in_flight", "Requests this worker holds and has not answered.")
        g.add_metric([], self.core.in_flight)
        yield g


class WorkerMetrics:
    def __init__(self, metrics: Metrics, core):
        self.m = m = metrics
        lab = ("instance_index",)
        self.ttft = m.histogram("phaser_request_ttft_seconds", "Time to first token (stack s).", lab)
        self.e2e = m.histogram("phaser_request_e2e_seconds", "Arrival to last token (stack s).", lab)
        self.queue = m.histogram("phaser_request_queue_seconds", "Wait in the engine's queue before admission (stack s).", lab)
        self.tpot = m.histogram("phaser_request_tpot_seconds", "Per-request mean time per output token after the first (stack s).", lab)
        self.done = m.counter("phaser_worker_completions", "Completions published, by status.", ("instance_index", "status"))
        self.preempt = m.counter("phaser_worker_preemptions", "Preemptions of the completed requests.", lab)
        self.prompt_tokens = m.counter("phaser_worker_prompt_tokens", "Prompt tokens of the completed requests.", lab)
        self.output_tokens = m.counter("phaser_worker_output_tokens", "Output tokens generated.", lab)
        self.running = m.gauge("phaser_worker_running", "Running requests per the last heartbeat.", ("instance_index", "phase"))
        self.waiting = m.gauge("phaser_worker_waiting", "Requests in the instance's waiting queue.", lab)
        self.kv_used = m.gauge("phaser_worker_kv_used_blocks", "KV cache blocks in use.", lab)
        self.kv_total = m.gauge("phaser_worker_kv_total_blocks", "KV cache blocks of the instance.", lab)
        self.kv_ratio = m.gauge("phaser_worker_kv_usage_ratio", "KV cache blocks in use / total.", lab)
        self.healthy = m.gauge("phaser_worker_instance_healthy", "1 if the instance reports healthy.", lab)
        itl = m.bulk_histogram("phaser_request_itl_seconds", "Inter-token latency of every generated token (stack s).", lab)
        m.registry.register(_WorkerCollector(core))
        for i, eng in core.engines.items():
            eng.itl = itl.part(i)
            for st in ("ok", "rejected", "error"):
                self.done.labels(str(i), st)  # series exist from the start
            for c in (self.preempt, self.prompt_tokens, self.output_tokens, self.ttft, self.e2e, self.queue, self.tpot):
                c.labels(str(i))

    def on_completion(self, c) -> None:
        i = str(c.instance)
        self.done.labels(i, c.status).inc()
        if c.status != "ok":
            return
        self.ttft.labels(i).observe(c.ttft_s)
        self.e2e.labels(i).observe(c.e2e_s)
        self.queue.labels(i).observe(c.queue_wait_s)
        if c.output_tokens > 1:
            self.tpot.labels(i).observe(c.tbt_mean_s)
        self.preempt.labels(i).inc(c.preemptions)
        self.prompt_tokens.labels(i).inc(c.prompt_tokens)
        self.output_tokens.labels(i).inc(c.output_tokens)

    def on_status(self, s) -> None:
        i = str(s.instance)
        self.running.labels(i, "prefill").set(s.running_prefill)
        self.running.labels(i, "decode").set(s.running_decode)
        self.waiting.labels(i).set(s.waiting)
        self.kv_used.labels(i).set(s.kv_blocks_used)
        self.kv_total.labels(i).set(s.kv_blocks_total)
        self.kv_ratio.labels(i).set(s.kv_blocks_used / s.kv_blocks_total)
        self.healthy.labels(i).set(1.0 if s.health == "ok" else 0.0)
