"""Summary metrics of a simulation (the fields a ``phaser bench`` row carries).

Definitions (decisions where the issue is silent):

* ``e2e_*``: end-to-end latency from the request's arrival in the system (router
  queue included) to its last token; percentiles by linear interpolation
  (numpy's default).
* ``ttft_*``: arrival to first token, router wait included.
* ``tbt_mean``: the token-weighted mean time between tokens, Σ(finish − first
  token) / Σ(output − 1) — the mean over all inter-token gaps of the run.
* ``tbt_p99``: the 99th percentile over requests (with ≥ 2 tokens) of each
  request's own p99 TBT — how bad the stalls of the unluckiest requests are.
* ``simulated_seconds``: last finish − first arrival; ``wall_seconds``: the
  runner's wall time; ``speedup`` = simulated / wall; ``requests_per_wall_s``.
"""

from __future__ import annotations

import numpy as np


def summarize(records, wall_seconds: float = 0.0, preemptions: int | None = None) -> dict:
    n = len(records)
    out: dict = {"n_requests": n}
    if n == 0:
        for k in ("e2e_mean", "e2e_p50", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p99", "tbt_mean", "tbt_p99",
                  "router_wait_mean", "simulated_seconds"):
            out[k] = 0.0
        out["preemptions"] = int(preemptions or 0)
        out["wall_seconds"] = float(wall_seconds)
        out["speedup"] = 0.0
        out["requests_per_wall_s"] = 0.0
        return out
    e2e = np.fromiter((r.e2e_s for r in records), float, n)
    ttft = np.fromiter((r.ttft_s for r in records), float, n)
    wait = np.fromiter((r.router_wait_s for r in records), float, n)
    span = np.fromiter((r.finish_s - r.first_token_s for r in records), float, n)
    gaps = np.fromiter((r.output_tokens - 1 for r in records), float, n)
    p99s = np.fromiter((r.tbt_p99_s for r in records if r.output_tokens > 1), float)
    e50, e90, e99 = np.percentile(e2e, [50, 90, 99])
    sim_s = max(r.finish_s for r in records) - min(r.arrival_s for r in records)
    out.update(
        e2e_mean=float(e2e.mean()), e2e_p50=float(e50), e2e_p90=float(e90), e2e_p99=float(e99),
        ttft_mean=float(ttft.mean()), ttft_p99=float(np.percentile(ttft, 99)),
        tbt_mean=float(span.sum() / gaps.sum()) if gaps.sum() > 0 else 0.0,
        tbt_p99=float(np.percentile(p99s, 99)) if p99s.size else 0.0,
        router_wait_mean=float(wait.mean()),
        preemptions=int(preemptions if preemptions is not None else sum(r.preemptions for r in records)),
        simulated_seconds=float(sim_s), wall_seconds=float(wall_seconds),
        speedup=float(sim_s / wall_seconds) if wall_seconds > 0 else 0.0,
        requests_per_wall_s=float(n / wall_seconds) if wall_seconds > 0 else 0.0,
    )
    return out
