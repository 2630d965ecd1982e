"""The run summary ``phaser up`` prints and writes: what came back on
``completions`` for the requests it sent.

Counting rules (decisions): a completion counts once per request id (later
copies are ``duplicates``); completions of ids this run did not send are
ignored (``foreign``, e.g. an earlier run on the same broker); ``lost`` =
requested − completed; a completion on an instance outside ``0..N-1`` is
counted in ``bad_instance``. Every request ends with one completion whose
status is ``ok`` (counted in ``completed``), ``rejected`` (the instance
refused it, e.g. longer than its context) or ``error`` (``failed``); ``lost``
= requested − all three. Latency statistics (stack seconds) are over the
``ok`` completions only: per request TTFT, mean time between tokens, E2E,
router wait; mean and p50/p90/p99 (numpy's linear interpolation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from protos import Completion

#: summary key prefix -> Completion field
METRICS = {"ttft": "ttft_s", "tbt": "tbt_mean_s", "e2e": "e2e_s", "router_wait": "router_wait_s"}
STATS = ("mean", "p50", "p90", "p99")


@dataclass
class Tally:
    requested_ids: set[str]
    n_instances: int
    completions: dict[str, Completion] = field(default_factory=dict)
    duplicates: int = 0
    foreign: int = 0
    bad_instance: int = 0
    load_report: dict = field(default_factory=dict)  # the publisher's report (load_generator.publisher)

    def add(self, c: Completion) -> None:
        if c.request_id not in self.requested_ids:
            self.foreign += 1
            return
        if c.request_id in self.completions:
            self.duplicates += 1
            return
        if not 0 <= c.instance < self.n_instances:
            self.bad_instance += 1
        self.completions[c.request_id] = c

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
            vals = np.array([getattr(c, f) for c in cs], dtype=float)
            if len(vals):
                p50, p90, p99 = np.percentile(vals, [50, 90, 99])
                out.update({f"{key}_mean": float(vals.mean()), f"{key}_p50": float(p50),
                            f"{key}_p90": float(p90), f"{key}_p99": float(p99)})
            else:
                out.update({f"{key}_{s}": None for s in STATS})
        out["preemptions"] = int(sum(c.preemptions for c in cs))
        return out


def render(summary: dict, title: str = "phaser up"):
    from rich.table import Table

    t = Table(title=title)
    t.add_column("metric (stack s)")
    for s in STATS:
        t.add_column(s, justify="right")
    for key in METRICS:
        t.add_row(key, *("-" if summary[f"{key}_{s}"] is None else f"{summary[f'{key}_{s}']:.3f}" for s in STATS))
    counts = Table(title=None, show_header=False)
    for k in ("requested", "completed", "rejected", "failed", "lost", "duplicates", "preemptions"):
        counts.add_row(k, str(summary[k]))
    return counts, t
