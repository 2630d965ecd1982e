"""Workload statistics: what ``phaser workload stats`` prints and writes.

``workload_stats(requests)`` returns a JSON-ready dict:
``count``, ``duration_s`` (first to last arrival), ``rate`` (mean rate,
``(count - 1) / duration_s``, i.e. 1 / mean inter-arrival), ``cv`` (std / mean
of inter-arrival gaps: 1 for Poisson, > 1 bursty), ``prompt`` and ``output``
(``mean``, ``p50``, ``p90``, ``p99``, ``max`` tokens; numpy's linear
percentiles), ``heavy_decode_share`` and ``tasks``: task -> ``count``,
``share``, ``prompt_mean``, ``output_mean``, ``heavy_decode_share``
(requests without a task count under ``"-"``).

Heavy decode = output >= 147 tokens: the paper's 5-second decode threshold on
the ``v100-llama2-7b`` profile (5 s / 34 ms per iteration = 147 tokens).
"""

from __future__ import annotations

import numpy as np

from load_generator.synthetic.paper_mix import HEAVY_DECODE_TOKENS
from protos import Request

NO_TASK = "-"


def _summary(x: np.ndarray) -> dict[str, float]:
    if x.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    p50, p90, p99 = np.percentile(x, [50, 90, 99])
    return {"mean": float(x.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(x.max())}


def workload_stats(requests: list[Request], *, heavy_tokens: int = HEAVY_DECODE_TOKENS) -> dict:
    n = len(requests)
    t = np.array([r.arrival_s for r in requests], dtype=float)
    prompt = np.array([r.prompt_tokens for r in requests], dtype=float)
    output = np.array([r.output_tokens or 0 for r in requests], dtype=float)
    gaps = np.diff(t)
    duration = float(t[-1] - t[0]) if n else 0.0
    mean_gap = float(gaps.mean()) if gaps.size else 0.0
    tasks: dict[str, dict] = {}
    names = np.array([r.task or NO_TASK for r in requests], dtype=object)
    for name in sorted(set(names.tolist())):
        sel = names == name
        k = int(sel.sum())
        tasks[name] = {
            "count": k,
            "share": k / n,
            "prompt_mean": float(prompt[sel].mean()),
            "output_mean": float(output[sel].mean()),
            "heavy_decode_share": float((output[sel] >= heavy_tokens).mean()),
        }
    return {
        "count": n,
        "duration_s": duration,
        "rate": (n - 1) / duration if duration > 0 else 0.0,
        "cv": float(gaps.std() / mean_gap) if mean_gap > 0 else 0.0,
        "prompt": _summary(prompt),
        "output": _summary(output),
        "heavy_decode_tokens": heavy_tokens,
        "heavy_decode_share": float((output >= heavy_tokens).mean()) if n else 0.0,
        "tasks": tasks,
    }
