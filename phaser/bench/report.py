"""The bench table (rich): one line per (scenario, rate[, view delays], policy),
mean ± 95% CI when repeated, improvement of mean E2E over round robin. The
delay columns appear only when a delay was set (a stale-view sweep)."""

from __future__ import annotations

from rich.table import Table


def _fmt(a: dict, m: str, digits: int = 3, scale: float = 1.0) -> str:
    v, ci = a[m] * scale, a.get(f"{m}_ci95", 0.0) * scale
    if a.get("repeats", 1) > 1 and ci == ci:
        return f"{v:,.{digits}f}±{ci:,.{digits}f}"
    return f"{v:,.{digits}f}"


def _ms(a: dict, m: str, digits: int = 1) -> str:
    """A latency (seconds in the rows and JSON) printed in milliseconds."""
    return _fmt(a, m, digits, 1000.0)


def bench_table(agg: list[dict], title: str = "phaser bench (latencies in stack ms; JSON keeps seconds)") -> Table:
    delays = any(a.get("heartbeat_delay_s") is not None or a.get("completion_delay_s") is not None for a in agg)
    t = Table(title=title, show_lines=False, header_style="bold")
    for col in ("scenario", "rate", *(("hb delay", "compl. delay") if delays else ()), "policy", "E2E mean", "E2E p50", "E2E p90", "E2E p99", "TTFT mean",
                "TTFT p50", "TTFT p90", "TTFT p99", "TBT mean", "TBT p99", "router wait", "preempt", "rejected", "vs RR %"):
        t.add_column(col, justify="left" if col in ("scenario", "policy") else "right", no_wrap=True)
    def delay(v) -> str:
        return f"{v:g} s" if v is not None else "0 s"

    for a in sorted(agg, key=lambda a: (a["scenario"], a["rate"] or 0, a.get("heartbeat_delay_s") or 0,
                                        a.get("completion_delay_s") or 0, a["e2e_mean"])):
        imp = a.get("improvement_vs_rr_pct")
        cols = (delay(a.get("heartbeat_delay_s")), delay(a.get("completion_delay_s"))) if delays else ()
        t.add_row(a["scenario"], f"{a['rate']:.1f}" if a["rate"] else "trace", *cols, a["policy"],
                  _ms(a, "e2e_mean"), _ms(a, "e2e_p50"), _ms(a, "e2e_p90"), _ms(a, "e2e_p99"),
                  _ms(a, "ttft_mean"), _ms(a, "ttft_p50"), _ms(a, "ttft_p90"), _ms(a, "ttft_p99"),
                  _ms(a, "tbt_mean", 2), _ms(a, "tbt_p99", 2), _ms(a, "router_wait_mean"),
                  _fmt(a, "preemptions", 1), _fmt(a, "rejected", 0), "" if imp is None else f"{imp:+.2f}")
    return t


def bench_markdown(agg: list[dict]) -> str:
    """The results as markdown, a table per (scenario, rate): latencies in seconds, the paired
    mean-E2E gain over round robin per seed with its 95 % CI (the README's tables)."""
    out = []
    keys = sorted({(a["scenario"], a["rate"] or 0.0, a.get("heartbeat_delay_s") or 0.0, a.get("completion_delay_s") or 0.0)
                   for a in agg})
    for scn, rate, hb, cd in keys:
        rows = sorted((a for a in agg if (a["scenario"], a["rate"] or 0.0, a.get("heartbeat_delay_s") or 0.0,
                                           a.get("completion_delay_s") or 0.0) == (scn, rate, hb, cd)),
                      key=lambda a: a["e2e_mean"])
        a0 = rows[0]
        head = f"**{scn}** ({a0['instances']} × `{a0['profile']}`, `{a0['workload']}`, " + \
               (f"{rate:g} req/s, " if rate else "trace timing, ") + f"{a0['n_requests']} requests, {a0['repeats']} seed(s)" + \
               (f", heartbeat delay {hb:g} s" if hb else "") + (f", completion delay {cd:g} s" if cd else "") + ")"
        out += [head, "", "| policy | E2E mean (s) | E2E p99 | TTFT p99 | TBT p99 | preemptions | rejected | vs round-robin |",
                "|---|---|---|---|---|---|---|---|"]
        for a in rows:
            e = f"{a['e2e_mean']:.3f}" + (f" ± {a['e2e_mean_ci95']:.3f}" if a["repeats"] > 1 else "")
            g = a.get("gain_vs_rr_pct")
            gain = "" if g is None else f"{g:+.2f}%" + (f" ± {a['gain_vs_rr_ci95']:.2f}" if a["repeats"] > 1 else "")
            out.append(f"| {a['policy']} | {e} | {a['e2e_p99']:.2f} | {a['ttft_p99']:.3f} | {a['tbt_p99']:.3f} | "
                       f"{a['preemptions']:.0f} | {a['rejected']:.0f} | {gain} |")
        out.append("")
    return "\n".join(out)


def latency_table(results) -> Table:
    t = Table(title="router latency per decision (µs)", header_style="bold")
    for col in ("policy", "instances", "decisions", "p50", "p99", "mean"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        t.add_row(r.policy, str(r.instances), str(r.decisions), f"{r.p50_us:.1f}", f"{r.p99_us:.1f}", f"{r.mean_us:.1f}")
    return t


def headroom_table(agg: list[dict]) -> Table:
    base = ", ".join(dict.fromkeys(a["base"] for a in agg))
    hz = ", ".join(dict.fromkeys(f"{a.get('lookahead_mode', 'clairvoyant')}, horizon {a['horizon_s']:g} s"
                                 for a in agg if a.get("lookahead_e2e") is not None))
    t = Table(title=f"headroom: mean E2E (s), improvement over round robin (%); base heuristic {base}"
                    + (f"; lookahead {hz}" if hz else ""), header_style="bold")
    for col in ("scenario", "seeds", "round robin", "base", "base vs RR %",
                "lookahead", "lookahead vs RR %", "isolated bound", "max possible vs RR %"):
        t.add_column(col, justify="left" if col == "scenario" else "right", no_wrap=True)

    def f(a: dict, k: str, d: int = 3) -> str:
        if a.get(k) is None:
            return "—"
        ci = a.get(f"{k}_ci95") or 0.0
        return f"{a[k]:.{d}f}±{ci:.{d}f}" if a["seeds"] > 1 else f"{a[k]:.{d}f}"

    for a in agg:
        t.add_row(a["scenario"], str(a["seeds"]), f(a, "round_robin_e2e"), f(a, "base_e2e"), f(a, "base_gain_pct", 2),
                  f(a, "lookahead_e2e"), f(a, "lookahead_gain_pct", 2), f(a, "isolated_e2e"),
                  f(a, "isolated_gain_pct", 2))
    return t
