"""What one streamed completion experienced, measured from the stream itself.

``StreamTimer`` is fed the times at which the request was sent and at which
each chunk carrying generated text arrived (the caller reads the clock), plus
the engine's final ``usage`` and, where the engine sends them, its server-side
``timings``; ``record()`` turns that into the same ``RequestRecord`` the
simulated engine produces, so everything downstream (completions, the
trainer, the summary) cannot tell the two backends apart.

Decisions:

* **TTFT** = first chunk with generated text − arrival (the request's arrival
  at the stack, as for the simulated engine, so router and Kafka time count).
* **Inter-token gaps** are the gaps between chunks. An engine that batches
  several tokens in one chunk (vLLM's stream interval) gives fewer, longer
  gaps; the per-token mean is then (last − first chunk) ÷ (tokens − 1), with
  tokens from ``usage``, which is what the simulator's ``tbt_mean_s`` means.
  p99 and max are over the chunk gaps.
* **Queue time**: the engine's ``timings.prompt_ms`` (llama.cpp) splits TTFT
  into prefill and waiting: admitted = first token − prompt time. Without it
  the request counts as admitted when it was sent (queue 0, documented).
* **Output tokens** are the engine's own count (``usage.completion_tokens``),
  else the chunks seen. Prompt tokens likewise (``usage.prompt_tokens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from phaser.engine.instance import RequestRecord


@dataclass
class StreamTimer:
    request_id: str
    instance: int
    task: str | None
    arrival_s: float
    sent_s: float
    prompt_tokens: int
    chunks: list[float] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    finish_reason: str | None = None

    def token(self, t: float) -> None:
        """A chunk with generated text arrived at ``t``."""
        self.chunks.append(t)

    def record(self, end_s: float, status: str = "ok", reason: str = "") -> RequestRecord:
        ch = self.chunks
        first = ch[0] if ch else end_s
        out = int(self.usage.get("completion_tokens") or len(ch))
        prompt = int(self.usage.get("prompt_tokens") or self.prompt_tokens)
        gaps = [b - a for a, b in zip(ch, ch[1:])]
        prompt_ms = self.timings.get("prompt_ms")
        admitted = self.sent_s
        if isinstance(prompt_ms, (int, float)) and math.isfinite(prompt_ms) and ch:
            admitted = min(first, max(self.sent_s, first - prompt_ms / 1000.0))
        cached = self.timings.get("cache_n")
        finish = max(end_s, first)
        return RequestRecord(
            id=self.request_id, instance=self.instance, task=self.task, arrival_s=self.arrival_s,
            admitted_s=admitted, first_token_s=first, finish_s=finish,
            ttft_s=max(0.0, first - self.arrival_s), e2e_s=max(0.0, finish - self.arrival_s),
            tbt_mean_s=(ch[-1] - first) / (out - 1) if len(ch) > 1 and out > 1 else 0.0,
            tbt_p99_s=_p99(gaps), tbt_max_s=max(gaps, default=0.0),
            queue_wait_s=max(0.0, admitted - self.sent_s), preemptions=0, prompt_tokens=max(0, prompt),
            output_tokens=max(0, out if ch or status == "ok" else 0),
            cached_prompt_tokens=int(cached) if isinstance(cached, (int, float)) and cached >= 0 else 0,
            status=status, reason=reason[:2000])


def _p99(gaps: list[float]) -> float:
    if not gaps:
        return 0.0
    s = sorted(gaps)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]
