"""What the policy versions did in a run, from its completions.

``policy_versions`` is the ``policy_versions`` entry of ``phaser up --json``:
each version that served requests, with its request count and mean E2E.
``plot_versions`` draws served E2E over time per version (``phaser up --plot``):
a rolling mean over arrival time, one line per version, plus the all-requests
rolling mean — the line that shows whether online learning moved the served
latency. Window: 60 stack seconds by default (≈ 1,200 requests at the paper's
20 req/s), enough to smooth the heavy-tailed E2E of paper-mix and short
enough to follow a run of a few thousand requests.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np


def policy_versions(completions) -> list[dict]:
    """[{version, policy, requests, e2e_mean}] sorted by version."""
    by: dict[int, list] = defaultdict(list)
    for c in completions:
        by[c.policy_version].append(c)
    return [{"version": v, "policy": cs[0].policy, "requests": len(cs),
             "e2e_mean": float(np.mean([c.e2e_s for c in cs]))} for v, cs in sorted(by.items())]


def rolling_mean(t: np.ndarray, y: np.ndarray, window_s: float, points: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``y`` over the trailing ``window_s`` at ``points`` times (cumulative sums, O(n log n))."""
    order = np.argsort(t)
    t, y = t[order], y[order]
    grid = np.linspace(t[0] + min(window_s, t[-1] - t[0]) * 0.25, t[-1], points)
    cs = np.concatenate([[0.0], np.cumsum(y)])
    hi = np.searchsorted(t, grid, side="right")
    lo = np.searchsorted(t, grid - window_s, side="left")
    n = hi - lo
    ok = n > 0
    return grid[ok], (cs[hi] - cs[lo])[ok] / n[ok]


def plot_versions(completions, path: str | Path, window_s: float = 60.0, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cs = list(completions)
    if not cs:
        raise ValueError("no completions to plot")
    t0 = min(c.arrival_s for c in cs)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    t_all = np.array([c.arrival_s - t0 for c in cs])
    y_all = np.array([c.e2e_s for c in cs])
    gx, gy = rolling_mean(t_all, y_all, window_s)
    ax.plot(gx, gy, color="black", lw=2, label="all requests")
    for row in policy_versions(cs):
        mine = [c for c in cs if c.policy_version == row["version"]]
        if len(mine) < 20:
            continue
        x, y = rolling_mean(np.array([c.arrival_s - t0 for c in mine]), np.array([c.e2e_s for c in mine]), window_s)
        ax.plot(x, y, lw=1, alpha=0.8, label=f"v{row['version']} ({row['policy']}, n={row['requests']})")
    ax.set_xlabel("arrival time (stack s)")
    ax.set_ylabel(f"mean E2E over the last {window_s:.0f} s (stack s)")
    ax.set_title(title or "served E2E per policy version")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
