"""Workload transforms: speed-up, retiming to a mean rate, truncation, mixing by share.

All pure functions on lists of ``protos.Request`` (sorted by arrival), returning
new lists; ids are kept unless stated.

* ``speedup(reqs, k)``: replay ``k`` times faster (every gap divided by ``k``).
* ``retime(reqs, rate)``: scale all gaps by one factor so the mean rate
  ``(n - 1) / (last - first)`` becomes ``rate``. Order and burst shape (the
  relative gaps, hence the CV of inter-arrivals) are unchanged.
* ``truncate(reqs, n=, duration_s=)``: first ``n`` requests and/or those that
  arrive within ``duration_s`` of the first arrival.
* ``merge(parts)``: superpose several streams by arrival time (ids must be
  unique across the parts; ``mix`` in the registry prefixes them).
"""

from __future__ import annotations

import math

from phaser.errors import PhaserError
from protos import Request


def _shift_scale(reqs: list[Request], factor: float) -> list[Request]:
    if not reqs:
        return []
    t0 = reqs[0].arrival_s
    return [r.model_copy(update={"arrival_s": t0 + (r.arrival_s - t0) * factor}) for r in reqs]


def mean_rate(reqs: list[Request]) -> float:
    """Requests per second between the first and last arrival (inf if they coincide, 0 if < 2)."""
    if len(reqs) < 2:
        return 0.0
    span = reqs[-1].arrival_s - reqs[0].arrival_s
    return math.inf if span <= 0 else (len(reqs) - 1) / span


def speedup(reqs: list[Request], k: float) -> list[Request]:
    if not (k > 0 and math.isfinite(k)):
        raise PhaserError(f"speed-up factor must be a positive number, got {k}")
    return _shift_scale(reqs, 1.0 / k)


def retime(reqs: list[Request], rate: float) -> list[Request]:
    if not (rate > 0 and math.isfinite(rate)):
        raise PhaserError(f"target rate must be a positive number of requests per second, got {rate}")
    current = mean_rate(reqs)
    if current == 0.0 or math.isinf(current):
        return list(reqs)  # fewer than 2 requests or all at one instant: nothing to scale
    return _shift_scale(reqs, current / rate)


def truncate(reqs: list[Request], n: int | None = None, duration_s: float | None = None) -> list[Request]:
    out = list(reqs)
    if n is not None:
        if n < 0:
            raise PhaserError(f"request count must be >= 0, got {n}")
        out = out[:n]
    if duration_s is not None:
        if not duration_s > 0:
            raise PhaserError(f"duration must be > 0 seconds, got {duration_s}")
        if out:
            end = out[0].arrival_s + duration_s
            out = [r for r in out if r.arrival_s <= end]
    return out


def merge(parts: list[list[Request]]) -> list[Request]:
    merged = sorted((r for p in parts for r in p), key=lambda r: r.arrival_s)
    ids = {r.id for r in merged}
    if len(ids) != len(merged):
        raise PhaserError("merged workloads have clashing request ids")
    return merged
