"""Episodes of a replayed trace: disjoint time windows for training, selection and test.

A replayed trace (``azure-code``, ``azure-conv``) has no randomness: every
workload "seed" is the same hour, so seed-indexed episodes would train, select
and benchmark on one and the same draw. ``TraceWindows`` cuts the trace into
consecutive windows of ``window_s`` seconds of trace time and deals them out
round-robin in blocks of four: windows ``4j`` and ``4j+1`` are **training**,
``4j+2`` **selection** (model selection, ``phaser train``'s evaluation), and
``4j+3`` **test** (reported at the end of training, never used to choose
anything). Interleaving spreads each set over the whole hour, so a trend in
the trace (the code trace's load is not stationary) reaches all three alike.

Seed mapping (what ``phaser.rl.training`` asks for):

* ``EVAL_SEED_BASE + i`` → selection window ``i`` (refused beyond the last);
* ``TEST_SEED_BASE + i`` → test window ``i``;
* any other seed (training and demonstration seeds) → training window
  ``seed mod n_train``, so consecutive episodes cycle through all of them.

Defaults (decisions where the task is silent): 180 s windows — the 3,600 s
azure-code hour gives 20 windows (10 training, 5 selection, 5 test) of ~440
requests each at its 2.6 req/s mean; shorter windows would give more test
pairs but more of each episode would be the empty start and the drain.
Each window is re-based to start at 0 (``load_generator.transforms`` does the
cutting) and keeps the trace's own timing and burst shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from phaser.errors import PhaserError

EVAL_SEED_BASE = 100
TEST_SEED_BASE = 500
#: Default window length (s of trace time), see the module docstring.
WINDOW_S = 180.0
ROLES = ("train", "train", "select", "test")


@dataclass(frozen=True)
class TraceWindows:
    workload: str
    window_s: float = WINDOW_S
    rate: float | None = None  # a retimed trace (``phaser train --rate``), else the trace's own timing

    def __post_init__(self):
        if not self.window_s > 0:
            raise PhaserError(f"trace window must be > 0 seconds, got {self.window_s}")

    @cached_property
    def windows(self) -> dict[str, list[list]]:
        """role → list of windows (each a list of requests, arrival re-based to 0)."""
        from load_generator import load_workload

        reqs = list(load_workload(self.workload, rate=self.rate))
        t0 = reqs[0].arrival_s
        out: dict[str, list[list]] = {r: [] for r in set(ROLES)}
        buckets: dict[int, list] = {}
        for r in reqs:
            buckets.setdefault(int((r.arrival_s - t0) // self.window_s), []).append(r)
        for k in range(max(buckets) + 1):
            w = buckets.get(k, [])
            if len(w) < 2:
                continue  # an (almost) empty trailing window is no episode
            start = w[0].arrival_s
            out[ROLES[k % len(ROLES)]].append([x.model_copy(update={"arrival_s": x.arrival_s - start}) for x in w])
        if not out["train"] or not out["select"] or not out["test"]:
            raise PhaserError(f"workload {self.workload!r} is too short for {self.window_s:g} s windows "
                              f"(needs at least 4 windows)")
        return out

    def counts(self) -> dict[str, int]:
        return {role: len(ws) for role, ws in self.windows.items()}

    def requests(self, seed: int) -> list:
        w = self.windows
        for base, role in ((EVAL_SEED_BASE, "select"), (TEST_SEED_BASE, "test")):
            if base <= seed < base + 100:
                i = seed - base
                if i >= len(w[role]):
                    raise PhaserError(f"only {len(w[role])} {role} windows of {self.window_s:g} s in "
                                      f"{self.workload}; ask for fewer (--eval-seeds)")
                return list(w[role][i])
        return list(w["train"][seed % len(w["train"])])

    def seeds(self, role: str) -> list[int]:
        """The seeds that map to every window of ``role`` ("select" or "test")."""
        base = {"select": EVAL_SEED_BASE, "test": TEST_SEED_BASE}[role]
        return [base + i for i in range(len(self.windows[role]))]

    def as_dict(self) -> dict:
        return {"workload": self.workload, "window_s": self.window_s, "rate": self.rate, "roles": list(ROLES), **{
            f"n_{k}": v for k, v in self.counts().items()}}


def paired_gain(policy: list[float], reference: list[float]) -> tuple[float, float]:
    """Mean and 95 % half-width (Student t, ``phaser.bench.stats``) of the per-window
    relative gain ``(reference − policy) / reference`` in percent: > 0 = policy faster."""
    from phaser.bench.stats import mean_ci

    if len(policy) != len(reference) or not policy:
        raise ValueError("paired comparison needs two equally long, non-empty lists")
    return mean_ci([100.0 * (r - p) / r for p, r in zip(policy, reference)])
