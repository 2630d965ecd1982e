"""Map an engine's own telemetry onto the fields of an ``InstanceStatus``.

A worker in front of a real engine does not run the engine's scheduler, so
its heartbeat comes from what the engine reports (its Prometheus ``/metrics``
text, and for llama.cpp its ``/slots`` JSON), polled once per heartbeat
period. Pure functions: text and JSON in, an ``EngineTelemetry`` out; the HTTP
polling is ``services.backends.openai``'s.

The mapping per engine (metric names as those engines document them):

=================  ==================================  ===============================  ==============================
status field       vLLM (V0 and V1)                    SGLang                           llama.cpp server (``--metrics``)
=================  ==================================  ===============================  ==============================
running            ``vllm:num_requests_running``       ``sglang:num_running_reqs``      ``llamacpp:requests_processing``
waiting            ``vllm:num_requests_waiting``       ``sglang:num_queue_reqs``        ``llamacpp:requests_deferred``
KV usage (0–1)     ``vllm:kv_cache_usage_perc`` (V1),  ``sglang:token_usage``           ``/slots``: Σ n_prompt_tokens ÷ n_ctx
                   ``vllm:gpu_cache_usage_perc`` (V0)
prefill / decode   not reported: all counted decode    not reported                     ``/slots``: a busy slot with no
                                                                                         decoded token yet is in prefill
=================  ==================================  ===============================  ==============================

Decisions:

* **What is not reported is said, not invented.** ``unknown`` lists the
  ``InstanceStatus`` fields the engine gave no number for (the message's
  ``unknown`` field); the router's view then keeps its own bookkeeping for
  those instead of being "corrected" to a made-up zero. An engine exposing no
  metric we know (another server, metrics disabled) reports everything as
  unknown except what the worker itself counts (its requests in flight).
* **KV blocks.** Engines report a usage fraction; the heartbeat carries
  ``kv_blocks_used`` of ``kv_blocks_total`` where total is the profile's block
  count (what the router's view is built on), so used = round(fraction ×
  total).
* Several series of one metric (labels per model or rank) are summed; a
  fraction is averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: metric name per (engine, quantity)
METRICS = {
    "vllm": {"running": ("vllm:num_requests_running",), "waiting": ("vllm:num_requests_waiting",),
             "kv_frac": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")},
    "sglang": {"running": ("sglang:num_running_reqs",), "waiting": ("sglang:num_queue_reqs",),
               "kv_frac": ("sglang:token_usage",)},
    "llama.cpp": {"running": ("llamacpp:requests_processing",), "waiting": ("llamacpp:requests_deferred",),
                  "kv_frac": ()},
}
ENGINES = tuple(METRICS)


@dataclass
class EngineTelemetry:
    """What one poll learnt; ``None`` = not reported."""

    engine: str | None = None
    running: int | None = None
    running_prefill: int | None = None
    waiting: int | None = None
    kv_frac: float | None = None
    tokens_in_flight: int | None = None
    extra: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> dict[str, list[float]]:
    """Prometheus text exposition → {sample name: [values of its series]}.

    prometheus_client's parser does the reading; a malformed exposition raises
    ValueError."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(float(s.value))
    return out


def detect_engine(samples: dict[str, list[float]]) -> str | None:
    for name in samples:
        if name.startswith("vllm:"):
            return "vllm"
        if name.startswith("sglang:"):
            return "sglang"
        if name.startswith("llamacpp:"):
            return "llama.cpp"
    return None


def from_metrics(samples: dict[str, list[float]], engine: str | None = None) -> EngineTelemetry:
    engine = engine or detect_engine(samples)
    t = EngineTelemetry(engine=engine)
    if engine not in METRICS:
        return t
    names = METRICS[engine]

    def first(keys, mean=False):
        for k in keys:
            v = samples.get(k)
            if v:
                return sum(v) / len(v) if mean else sum(v)
        return None

    r, w, kv = first(names["running"]), first(names["waiting"]), first(names["kv_frac"], mean=True)
    t.running = None if r is None else int(round(r))
    t.waiting = None if w is None else int(round(w))
    t.kv_frac = None if kv is None else min(1.0, max(0.0, kv))
    return t


def merge_llamacpp_slots(t: EngineTelemetry, slots: list[dict]) -> EngineTelemetry:
    """llama.cpp's ``/slots`` (one JSON object per slot): busy slots, which of them
    are still in prefill (no token decoded yet), the tokens they hold, and the
    KV usage as tokens held ÷ the slots' context. Fields a build does not
    report stay ``None``."""
    busy = [s for s in slots if s.get("is_processing")]
    n_ctx = sum(int(s.get("n_ctx") or 0) for s in slots)
    held = 0
    prefill = 0
    known = True
    for s in busy:
        nt = s.get("next_token")
        nt = nt[0] if isinstance(nt, list) and nt else nt
        decoded = nt.get("n_decoded") if isinstance(nt, dict) else None
        prompt = s.get("n_prompt_tokens", s.get("n_prompt_tokens_processed"))
        if decoded is None:
            known = False
            continue
        if int(decoded) == 0:
            prefill += 1
        if prompt is None:
            known = False
        else:
            # the slot's token count: this build (llama-cpp-python 0.3.36's llama.cpp) counts
            # decoded tokens in it (an 8-token prompt 28 tokens into its decode showed 36)
            held += max(int(prompt), int(decoded))
    if t.running is None:
        t.running = len(busy)
    t.running_prefill = prefill if known else None
    if known:
        t.tokens_in_flight = held
        if n_ctx > 0:
            t.kv_frac = min(1.0, held / n_ctx)
    return t


def status_fields(t: EngineTelemetry, kv_blocks_total: int, inflight: int) -> tuple[dict, list[str]]:
    """(``InstanceStatus`` keyword fields, names of the fields not reported).
    ``inflight``: requests this worker has sent to the engine and not finished
    (what the worker knows without the engine)."""
    unknown: list[str] = []
    running = t.running if t.running is not None else inflight
    if t.running is None:
        unknown.append("running")
    if t.running_prefill is None:
        pf = 0
        unknown.append("running_prefill")
    else:
        pf = min(t.running_prefill, running)
    waiting = t.waiting
    if waiting is None:
        waiting = 0
        unknown.append("waiting")
    if t.kv_frac is None:
        used = 0
        unknown.append("kv_blocks_used")
    else:
        used = int(round(t.kv_frac * kv_blocks_total))
    if t.tokens_in_flight is None:
        unknown.append("tokens_in_flight")
    return ({"running_prefill": pf, "running_decode": max(0, running - pf), "waiting": max(0, waiting),
             "kv_blocks_used": max(0, min(used, kv_blocks_total)), "kv_blocks_total": max(1, kv_blocks_total),
             "tokens_in_flight": max(0, t.tokens_in_flight or 0)}, unknown)
