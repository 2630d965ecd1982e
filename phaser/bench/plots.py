"""Latency-vs-load plots: one PNG per workload, one line per policy (mean E2E
and p99 TTFT against request rate, error bars = 95% CI when repeated)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path


def latency_vs_load(rows: list[dict], out_dir: str | Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    by_wl: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_wl[f"{r['workload']}_{r['instances']}x{r['profile']}"][r["policy"]].append(r)
    written = []
    for wl, pols in sorted(by_wl.items()):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for pol, rs in sorted(pols.items()):
            rs = sorted(rs, key=lambda r: r["rate"])
            x = [r["rate"] for r in rs]
            for ax, key in zip(axes, ("e2e_mean", "ttft_p99")):
                y = [r[key] for r in rs]
                err = [r.get(f"{key}_ci95", 0.0) for r in rs]
                ax.errorbar(x, y, yerr=err, marker="o", ms=3, capsize=2, label=pol)
        for ax, title in zip(axes, ("mean E2E latency (s)", "p99 TTFT (s)")):
            ax.set_xlabel("request rate (req/s)")
            ax.set_ylabel(title)
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.suptitle(wl)
        fig.tight_layout()
        path = out / f"latency_vs_load_{wl.replace('/', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
