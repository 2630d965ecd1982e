"""Latency-vs-load plots: one PNG per scenario (a scenario is one workload on
one cluster), one line per policy, three panels: mean E2E, p99 TTFT and p99
TBT against the request rate; error bars are the 95% CI when repeated.

Decisions (from looking at the first cut's output):

* Grouped by scenario (and view delays, when swept), not by (workload,
  cluster): paper-a100 and paper-a100-chunked share both, and their points
  were drawn as one zig-zag line per policy.
* p99 TBT is drawn too: it is the SLO that binds first on V100 (see
  ``phaser.bench.capacity``), and was invisible.
* A log y axis only when a panel spans more than ``LOG_SPAN`` = 20x (an
  overloaded policy next to a healthy one); over a narrow range log ticks read
  ``6 x 10^0`` and flatten the differences the plot is for. Tick labels are
  plain numbers either way.
* The SLO thresholds, when given, are dashed, labelled horizontal lines on
  their panels. No error bars (nor their caps in the legend) without repeats;
  with repeats the policies' points are dodged by 1.2% of the rate range so
  their bars do not hide each other.
* Colours and markers are fixed per policy name (sorted), so the same policy
  looks the same in every PNG of a run.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

LOG_SPAN = 20.0
PANELS = (("e2e_mean", "mean E2E latency (s)"), ("ttft_p99", "p99 TTFT (s)"), ("tbt_p99", "p99 TBT (s)"))
MARKERS = "os^vD<>ph*"


def _group(r: dict) -> str:
    """A scenario, plus its view delays when a stale-view sweep set them."""
    tag = "".join(f"_{short}{r[k]:g}s" for k, short in (("heartbeat_delay_s", "hb"), ("completion_delay_s", "cd"))
                  if r.get(k) is not None)
    return r["scenario"] + tag


def _file_name(scenario: str) -> str:
    return "latency_vs_load_" + re.sub(r"[^A-Za-z0-9._-]+", "_", scenario).strip("_") + ".png"


def latency_vs_load(rows: list[dict], out_dir: str | Path, *, slo_ttft_p99: float | None = None,
                    slo_tbt_p99: float | None = None) -> list[Path]:
    """Write one PNG per scenario of aggregated bench ``rows``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    out = Path(out_dir)
    by_sc: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_sc[_group(r)][r["policy"]].append(r)
    one_file = out.suffix.lower() == ".png"
    if one_file:
        if len(by_sc) != 1:
            from phaser.errors import PhaserError

            raise PhaserError(f"--plot {out} names one PNG but the run makes {len(by_sc)} figures "
                              "(one per scenario): give a directory")
        out.parent.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
    all_pols = sorted({p for pols in by_sc.values() for p in pols})
    colors = plt.get_cmap("tab20" if len(all_pols) > 10 else "tab10").colors
    style = {p: (colors[i % len(colors)], MARKERS[i % len(MARKERS)]) for i, p in enumerate(all_pols)}
    slo = {"ttft_p99": slo_ttft_p99, "tbt_p99": slo_tbt_p99}
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    written = []
    for scn, pols in sorted(by_sc.items()):
        any_row = next(iter(pols.values()))[0]
        repeats = max(r.get("repeats", 1) for rs in pols.values() for r in rs)
        rates = sorted({r["rate"] for rs in pols.values() for r in rs}, key=lambda x: -1 if x is None else x)
        if len(rates) == 1:  # one load point: lines would be dots; compare the policies as bars
            path = out if one_file else out / _file_name(scn)
            _bars(plt, pols, any_row, repeats, rates[0], slo, style, path)
            written.append(path)
            continue
        # error bars of different policies at one rate would sit on top of each other: dodge them
        dodge = 0.012 * (rates[-1] - rates[0]) if repeats > 1 and len(rates) > 1 else 0.0
        fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.6))
        for ax, (key, label) in zip(axes, PANELS):
            ys = []
            for i, (pol, rs) in enumerate(sorted(pols.items())):
                shift = dodge * (i - (len(pols) - 1) / 2)
                rs = sorted(rs, key=lambda r: r["rate"])
                y = [r[key] for r in rs]
                ys += y
                color, marker = style[pol]
                err = [r.get(f"{key}_ci95") or 0.0 for r in rs]
                ax.errorbar([r["rate"] + shift for r in rs], y, yerr=err if any(err) else None,
                            color=color, marker=marker, ms=4, lw=1.5, capsize=3, label=pol)
            if slo.get(key) is not None:
                ax.axhline(slo[key], color="0.3", ls="--", lw=1)
                ax.annotate(f"SLO {slo[key]:g} s", (0.01, slo[key]), xycoords=("axes fraction", "data"),
                            xytext=(0, 3), textcoords="offset points", fontsize=8, color="0.3")
                ys.append(slo[key])
            pos = [y for y in ys if y > 0]
            if pos and max(pos) / min(pos) > LOG_SPAN:
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.yaxis.set_major_formatter(plain)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("request rate (req/s)")
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9, frameon=False)
        ci = f", mean ± 95% CI of {repeats} seeds" if repeats > 1 else ""
        stale = ", ".join(f"{what} delay {any_row[k]:g} s" for k, what in
                          (("heartbeat_delay_s", "heartbeat"), ("completion_delay_s", "completion"))
                          if any_row.get(k) is not None)
        fig.suptitle(f"{any_row['scenario']}{f' ({stale})' if stale else ''}: {any_row['workload']} on "
                     f"{any_row['instances']} × {any_row['profile']}{ci}")
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        path = out if one_file else out / _file_name(scn)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _bars(plt, pols: dict, any_row: dict, repeats: int, rate, slo: dict, style: dict, path: Path) -> None:
    """One load point: per panel, one bar per policy (sorted by mean E2E), 95 % CI whiskers when repeated."""
    order = sorted(pols, key=lambda p: pols[p][0]["e2e_mean"])
    fig, axes = plt.subplots(1, len(PANELS), figsize=(15, 4.8))
    for ax, (key, label) in zip(axes, PANELS):
        ys = [pols[p][0][key] for p in order]
        err = [pols[p][0].get(f"{key}_ci95") or 0.0 for p in order]
        ax.bar(range(len(order)), ys, yerr=err if repeats > 1 and any(err) else None, capsize=3,
               color=[style[p][0] for p in order])
        ax.set_xticks(range(len(order)), order, rotation=60, ha="right", fontsize=8)
        if slo.get(key) is not None:
            ax.axhline(slo[key], color="0.3", ls="--", lw=1)
            ax.annotate(f"SLO {slo[key]:g} s", (0.01, slo[key]), xycoords=("axes fraction", "data"),
                        xytext=(0, 3), textcoords="offset points", fontsize=8, color="0.3")
        ax.set_title(label, fontsize=10)
        ax.grid(True, axis="y", alpha=0.3)
    ci = f", mean ± 95% CI of {repeats} seeds" if repeats > 1 else ""
    at = "the trace's own timing" if rate is None else f"{rate:g} req/s"
    fig.suptitle(f"{any_row['scenario']}: {any_row['workload']} on {any_row['instances']} × {any_row['profile']} "
                 f"at {at}{ci}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
