"""Cumulative bucket counts (a Prometheus-style histogram) that accept a count
per value, for distributions observed in bulk: the engine's inter-token
latencies, where one iteration hands the same gap to every request of its
batch. Pure (no I/O): ``services.metrics`` exposes it to Prometheus.

``add(v, n)`` counts ``n`` observations of ``v`` in the first bucket whose
upper bound is >= ``v`` (Prometheus' ``le`` rule); values above the last bound
land in ``+Inf``."""

from __future__ import annotations

from bisect import bisect_left

#: seconds: inter-token / per-iteration latencies (1 ms ... 10 s)
LATENCY_BOUNDS_S = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.06, 0.075, 0.1,
                    0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class Buckets:
    __slots__ = ("bounds", "counts", "sum", "total")

    def __init__(self, bounds=LATENCY_BOUNDS_S):
        b = tuple(float(x) for x in bounds)
        if not b or any(x >= y for x, y in zip(b, b[1:])):
            raise ValueError("bucket bounds must be non-empty and strictly increasing")
        self.bounds = b
        self.counts = [0] * (len(b) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.total = 0

    def add(self, v: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, v)] += n
        self.sum += v * n
        self.total += n

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations <= bound) per bucket, ending with (inf, total)."""
        out, acc = [], 0
        for le, c in zip(self.bounds + (float("inf"),), list(self.counts)):
            acc += c
            out.append((le, acc))
        return out
