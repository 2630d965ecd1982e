"""Capacity at SLO: the highest request rate a policy sustains while p99 TTFT
<= ``slo_ttft_p99`` and p99 TBT <= ``slo_tbt_p99`` -- the number operators buy
GPUs by.

Search: bracket then bisect on the rate. From the scenario's rate the bracket
doubles up while the SLO holds (or halves down while it fails), then
``iterations`` bisection steps narrow it; the answer is the highest rate seen
that met the SLO. ``run(rate) -> row`` is injected (the runner's simulation),
so this module is pure and testable with a synthetic latency curve.

Fixed horizon, not fixed count: every probe of a synthetic scenario simulates
the same stretch of arrivals, ``horizon_s`` seconds (default: the scenario's
own, ``n_requests / rate``, e.g. 100 s for paper-v100 and 25 s for
paper-a100), so a probe at rate r has ``ceil(r * horizon_s)`` requests. With a
fixed count (the first cut), a probe at 470 req/s on paper-a100 was a 4-second
burst that the KV cache swallowed whole: it "met" the SLO because the episode
ended before any queue could build, which overstated capacity several-fold. An
overload of x (arrivals x above service rate) grows the queue by x * horizon_s
of work, so a 25 s horizon exposes overloads of ~8% against a 2 s TTFT SLO.
Probes have at least ``MIN_PROBE_REQUESTS`` = 1,000 requests so a p99 is the
10th-worst request, not the worst. Trace scenarios (no rate of their own) keep
their request count: the trace is retimed to each probe's mean rate.

The search assumes the SLO holds below some rate and fails above it; a noisy,
non-monotone policy can make bisection settle on a local edge. Each probe's
(rate, ok, p99s) is recorded so this can be checked.

Default SLOs (interactive chat): first token within 2 s at p99, and p99
time-between-tokens 200 ms, i.e. at least 5 tokens/s, above a fast reader's
~4 tokens/s (250 words/min at ~1.3 tokens/word).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

from phaser.slo import DEFAULT_TBT_S as DEFAULT_SLO_TBT_P99, DEFAULT_TTFT_S as DEFAULT_SLO_TTFT_P99  # noqa: E402  (one SLO)
MIN_PROBE_REQUESTS = 1000


def probe_requests(rate: float, horizon_s: float, min_requests: int = MIN_PROBE_REQUESTS) -> int:
    """Requests of a probe at ``rate`` covering ``horizon_s`` seconds of arrivals."""
    return max(int(min_requests), math.ceil(rate * horizon_s))


@dataclass
class CapacityResult:
    capacity_rps: float          # highest rate meeting the SLO (0 if none did)
    probes: list[tuple[float, bool, float, float]] = field(default_factory=list)  # (rate, ok, ttft_p99, tbt_p99)
    bracket: tuple[float, float] = (0.0, 0.0)


def meets(row: dict, slo_ttft_p99: float, slo_tbt_p99: float) -> bool:
    return row["ttft_p99"] <= slo_ttft_p99 and row["tbt_p99"] <= slo_tbt_p99


def find_capacity(run: Callable[[float], dict], start_rate: float, *, slo_ttft_p99: float = DEFAULT_SLO_TTFT_P99,
                  slo_tbt_p99: float = DEFAULT_SLO_TBT_P99, iterations: int = 6, max_doublings: int = 10,
                  min_rate: float = 0.01) -> CapacityResult:
    res = CapacityResult(0.0)

    def probe(rate: float) -> bool:
        row = run(rate)
        ok = meets(row, slo_ttft_p99, slo_tbt_p99)
        res.probes.append((rate, ok, row["ttft_p99"], row["tbt_p99"]))
        if ok:
            res.capacity_rps = max(res.capacity_rps, rate)
        return ok

    lo, hi = 0.0, None
    r = start_rate
    if probe(r):
        lo = r
        for _ in range(max_doublings):
            r *= 2
            if probe(r):
                lo = r
            else:
                hi = r
                break
        if hi is None:  # still meeting the SLO at the top of the search
            res.bracket = (lo, lo)
            return res
    else:
        hi = r
        while r > min_rate:
            r /= 2
            if probe(r):
                lo = r
                break
            hi = r
        if lo == 0.0:
            res.bracket = (0.0, hi)
            return res
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if probe(mid):
            lo = mid
        else:
            hi = mid
    res.bracket = (lo, hi)
    return res
