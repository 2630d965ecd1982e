"""The serving SLO and goodput, one definition for every report (``phaser up``'s
summary, ``phaser bench`` capacity and leaderboard).

A request **meets the SLO** when its TTFT is at most ``ttft_s`` and its own p99
time between tokens at most ``tbt_s`` (stack seconds; vLLM's
``benchmark_serving`` and guidellm define goodput the same way, per request).
**Goodput** = requests that met it ÷ requests served (ok) + requests refused
(rejected or failed): a request that was not served did not meet it.
``goodput_rps`` is the same count per stack second of the run."""

from __future__ import annotations

import math
from dataclasses import dataclass

#: defaults (stack s): TTFT p99 2 s and TBT p99 200 ms, the capacity benchmark's SLO
DEFAULT_TTFT_S = 2.0
DEFAULT_TBT_S = 0.2


@dataclass(frozen=True)
class SLO:
    ttft_s: float = DEFAULT_TTFT_S
    tbt_s: float = DEFAULT_TBT_S

    def met(self, r) -> bool:
        """``r``: anything with ``ttft_s`` and ``tbt_p99_s`` (a completion, an engine record)."""
        return r.ttft_s <= self.ttft_s and r.tbt_p99_s <= self.tbt_s


def goodput(served: list, not_served: int, slo: SLO) -> float:
    """Share of all requests (served + ``not_served``) that met ``slo``; NaN with none."""
    total = len(served) + not_served
    if not total:
        return math.nan
    return sum(1 for r in served if slo.met(r)) / total
