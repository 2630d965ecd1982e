"""The run summary ``phaser up`` prints and writes: what came back on
``completions`` for the requests it sent.

Counting rules (decisions): a completion counts once per request id (later
copies are ``duplicates``); completions of ids this run did not send are
ignored (``foreign``, e.g. an earlier run on the same broker); ``lost`` =
requested − completed; a completion on an instance outside ``0..N-1`` is
counted in ``bad_instance``. Every request ends with one completion whose
status is ``ok`` (counted in ``completed``), ``rejected`` (the instance
refused it, e.g. longer than its context) or ``error`` (``failed``); ``lost``
= requested − all three.

Serving conventions (as vLLM's ``benchmark_serving`` and guidellm report):
latency statistics are over the ``ok`` completions, in stack seconds in the
JSON (keys end ``_s``) and milliseconds in the printed table: per request
TTFT, TPOT (the request's mean time per output token after the first), E2E,
router wait; mean and p50/p90/p99 (numpy's linear interpolation). ITL:
``itl_mean_s`` is the mean gap over **every** generated token (Σ decode time ÷
Σ gaps, exact from the completions); ``itl_p99_per_request_*`` the
distribution of each request's own p99 gap. Per-token ITL quantiles need every
gap, which completions do not carry: they are the workers' Prometheus
histogram ``phaser_request_itl_seconds`` (``--metrics-port``). Throughput:
requests and output tokens per stack second over the run's span (first
arrival to last finish); **goodput** at the SLO of ``phaser.slo`` (one
definition, shared with ``phaser bench``).

**Host behind the stack clock**: each completion's delivery delay = the
stack time it reached the summary − its ``finish_s``. On a host that keeps up
it is a few ms × the time scale; when the machine cannot run the stack at its
time scale, it grows. ``host_behind`` is set (and the table says so) when its
p99 exceeds ``HOST_BEHIND_S`` stack seconds or the load generator fell more
than 1 % of the schedule behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from phaser.slo import SLO, goodput
from protos import Completion

#: summary key prefix -> Completion field
METRICS = {"ttft": "ttft_s", "tpot": "tbt_mean_s", "e2e": "e2e_s", "router_wait": "router_wait_s"}
STATS = ("mean", "p50", "p90", "p99")
#: stack seconds of p99 delivery delay beyond which the summary says the host fell behind
HOST_BEHIND_S = 1.0


def _stats(prefix: str, vals) -> dict:
    vals = np.asarray(vals, dtype=float)
    if not len(vals):
        return {f"{prefix}_{s}_s": None for s in STATS}
    p50, p90, p99 = np.percentile(vals, [50, 90, 99])
    return {f"{prefix}_mean_s": float(vals.mean()), f"{prefix}_p50_s": float(p50),
            f"{prefix}_p90_s": float(p90), f"{prefix}_p99_s": float(p99)}


@dataclass
class Tally:
    requested_ids: set[str]
    n_instances: int
    completions: dict[str, Completion] = field(default_factory=dict)
    duplicates: int = 0
    foreign: int = 0
    bad_instance: int = 0
    load_report: dict = field(default_factory=dict)  # the publisher's report (load_generator.publisher)
    slo: SLO = field(default_factory=SLO)
    delays: list[float] = field(default_factory=list)  # stack s from finish_s to delivery, per completion

    def add(self, c: Completion, now_stack: float | None = None) -> None:
        if c.request_id not in self.requested_ids:
            self.foreign += 1
            return
        if c.request_id in self.completions:
            self.duplicates += 1
            return
        if not 0 <= c.instance < self.n_instances:
            self.bad_instance += 1
        self.completions[c.request_id] = c
        if now_stack is not None:
            self.delays.append(max(0.0, now_stack - c.finish_s))

    @property
    def done(self) -> bool:
        return len(self.completions) >= len(self.requested_ids)

    def summary(self) -> dict:
        statuses = [c.status for c in self.completions.values()]
        out: dict = {
            "requested": len(self.requested_ids), "completed": statuses.count("ok"),
            "rejected": statuses.count("rejected"), "failed": statuses.count("error"),
            "lost": len(self.requested_ids) - len(self.completions), "duplicates": self.duplicates,
            "bad_instance": self.bad_instance, "foreign": self.foreign,
            "lost_ids": sorted(self.requested_ids - self.completions.keys())[:20],  # a sample, to look them up
        }
        cs = [c for c in self.completions.values() if c.status == "ok"]
        for key, f in METRICS.items():
            out.update(_stats(key, [getattr(c, f) for c in cs if f != "tbt_mean_s" or c.output_tokens > 1]))
        multi = [c for c in cs if c.output_tokens > 1]
        gaps = sum(c.output_tokens - 1 for c in multi)
        out["itl_mean_s"] = float(sum(c.finish_s - c.first_token_s for c in multi) / gaps) if gaps else None
        out.update(_stats("itl_p99_per_request", [c.tbt_p99_s for c in multi]))
        out["preemptions"] = int(sum(c.preemptions for c in cs))
        span = (max(c.finish_s for c in cs) - min(c.arrival_s for c in cs)) if cs else 0.0
        out["span_s"] = float(span)
        out["request_throughput_rps"] = len(cs) / span if span > 0 else None
        out["output_throughput_tps"] = sum(c.output_tokens for c in cs) / span if span > 0 else None
        out["slo"] = {"ttft_s": self.slo.ttft_s, "tbt_p99_s": self.slo.tbt_s}
        g = goodput(cs, out["rejected"] + out["failed"] + out["lost"], self.slo)
        out["goodput"] = None if g != g else float(g)
        out["goodput_rps"] = (sum(1 for c in cs if self.slo.met(c)) / span) if span > 0 else None
        d = np.asarray(self.delays, dtype=float)
        out["delivery_delay_p99_s"] = float(np.percentile(d, 99)) if len(d) else None
        out["delivery_delay_max_s"] = float(d.max()) if len(d) else None
        load = self.load_report or {}
        behind_load = bool(load) and load.get("sent", 0) > 0 and not load.get("on_schedule", True)
        out["host_behind"] = bool(behind_load or (len(d) and out["delivery_delay_p99_s"] > HOST_BEHIND_S))
        return out


def render(summary: dict, title: str = "phaser up"):
    """The printed summary: counts, latencies in stack milliseconds, throughput and goodput."""
    from rich.table import Table

    def ms(v):
        return "-" if v is None else f"{1000.0 * v:,.1f}"

    t = Table(title=title)
    t.add_column("latency (stack ms)")
    for s in STATS:
        t.add_column(s, justify="right")
    for key in METRICS:
        t.add_row(key, *(ms(summary[f"{key}_{s}_s"]) for s in STATS))
    t.add_row("itl (every token)", ms(summary["itl_mean_s"]), "-", "-", "-")
    t.add_row("itl p99 per request", *(ms(summary[f"itl_p99_per_request_{s}_s"]) for s in STATS))
    counts = Table(title=None, show_header=False)
    for k in ("requested", "completed", "rejected", "failed", "lost", "duplicates", "preemptions"):
        counts.add_row(k, str(summary[k]))

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    slo = summary["slo"]
    counts.add_row("requests / stack s", num(summary["request_throughput_rps"], ",.2f"))
    counts.add_row("output tokens / stack s", num(summary["output_throughput_tps"], ",.1f"))
    counts.add_row(f"goodput (TTFT <= {slo['ttft_s'] * 1000:g} ms, TBT p99 <= {slo['tbt_p99_s'] * 1000:g} ms)",
                   "-" if summary["goodput"] is None else f"{summary['goodput']:.1%} ({num(summary['goodput_rps'], ',.2f')} req/s)")
    rss = summary.get("peak_rss_mb") or {}
    if rss:
        counts.add_row("peak memory (MB)", ", ".join(f"{n} {v:,.0f}" for n, v in rss.items()))
    if summary.get("host_behind"):
        counts.add_row("[bold red]host behind[/]", f"this machine could not run the stack at its time scale "
                       f"(delivery p99 {num(summary['delivery_delay_p99_s'], '.2f')} stack s): latencies include that; "
                       "use a lower --time-scale")
    return counts, t
