"""Capacity at SLO: the highest request rate a policy sustains while p99 TTFT
<= ``slo_ttft_p99`` and p99 TBT <= ``slo_tbt_p99`` -- the number operators buy
GPUs by.

Search: bracket then bisect on the rate. From the scenario's rate the bracket
doubles up while the SLO holds (or halves down while it fails), then
``iterations`` bisection steps narrow it; the answer is the highest rate seen
that met the SLO. ``run(rate) -> row`` is injected (the runner's simulation),
so this module is pure and testable with a synthetic latency curve.

Default SLOs (interactive chat): first token within 2 s at p99, and p99
time-between-tokens 200 ms, i.e. at least 5 tokens/s, above a fast reader's
~4 tokens/s (250 words/min at ~1.3 tokens/word).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

DEFAULT_SLO_TTFT_P99 = 2.0
DEFAULT_SLO_TBT_P99 = 0.2


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
