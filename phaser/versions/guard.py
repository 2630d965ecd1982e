"""Guard rails for a new policy version: canary split and automatic rollback.

Pure logic, no I/O, no clock of its own (the caller passes stack-clock times),
so the router runs it inline and the tests drive it by hand.

**Canary split.** A request goes to the canary when a hash of its id, mapped to
[0, 1), is below ``share``. Hashing the id (not a random draw) makes the split
deterministic and replayable, and — because request ids carry no information
about the request's size — both cohorts see the same mix and the same load
window: that is what makes their mean E2E comparable at all.

**Rollback rule.** While a canary runs, the guard follows every request either
version routed since the canary started (``on_assign``) and its E2E when it
completes (``on_complete``). A request still in flight counts with its current
age as a lower bound of its E2E: without this, a version that makes requests
*slow* looks good early, because only its fast requests have finished
(survivorship bias) — exactly the version we need to catch first. Then:

* roll back when both cohorts have ≥ ``min_samples`` requests and the canary's
  mean E2E exceeds the incumbent's by more than ``threshold`` (relative);
* promote when the canary has ≥ ``promote_after`` *completed* requests and is
  not worse than that;
* otherwise keep waiting. A canary that cannot collect ``min_samples`` within
  ``max_age_s`` stack seconds is rolled back (it cannot be judged, so it is not
  trusted).
* **Spill-over**: canary and incumbent share the router queue and the
  instances, so a canary can hurt the incumbent's requests too (a version that
  WAITs stalls the FCFS queue for everyone; one that piles work on an instance
  slows the incumbent's requests there) and the same-window comparison sees
  two equally bad cohorts. So the guard also takes the served mean E2E from
  *before* the canary (``baseline_e2e_s``): if the incumbent's own mean in the
  canary window is worse than that baseline by more than ``threshold``, the
  canary is rolled back as the likely cause. Under a genuine load increase
  this rolls back an innocent canary — cheap, the trainer publishes again.

**Probation.** A canary at 20% of the traffic is not the version at 100%: a
policy that favours one instance overloads it only once it routes everything,
and the queue it builds grows for minutes (measured in a from-scratch online
run: a version within 4% of round robin as a canary drifted from 9 s to
140 s mean E2E over the 300 stack s after its promotion). After a promotion,
``ProbationGuard`` compares the new version's *recent* mean E2E — its last
``promote_after`` completions plus its in-flight requests at their current
age — with the pre-canary baseline, and rolls it back to the previous
version when it is worse by more than ``threshold``. Probation ends after
``probation_s`` stack seconds (default 600: twice the drift window above)
and ``promote_after`` completions.

Defaults: ``share`` 0.2 (a bad version hurts at most a fifth of the traffic),
``threshold`` 0.10 (the paper's best policy beats round robin by 11%, so a
10% regression is as large as the whole gain we are after), ``min_samples`` 100
(the standard error of a mean E2E with CV ≈ 1 is then ≈ 10%, same order as the
threshold), ``promote_after`` 300 (≈ 5.8% standard error, well inside the
threshold). At 20 req/s a 0.2 canary collects 100 requests in 25 s.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field

from phaser.errors import PhaserError


def canary_bucket(request_id: str) -> float:
    """Deterministic uniform number in [0, 1) from a request id."""
    h = hashlib.blake2b(request_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


@dataclass(frozen=True)
class GuardConfig:
    share: float = 0.2
    threshold: float = 0.10
    min_samples: int = 100
    promote_after: int = 300
    max_age_s: float = 600.0
    probation_s: float = 600.0
    max_tracked: int = 100_000

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise PhaserError(f"canary share must be in (0, 1], got {self.share}")
        if not self.threshold >= 0.0:
            raise PhaserError(f"rollback threshold must be >= 0, got {self.threshold}")
        if self.min_samples < 1 or self.promote_after < self.min_samples:
            raise PhaserError(
                f"need 1 <= min_samples <= promote_after, got {self.min_samples} and {self.promote_after}")


@dataclass(frozen=True)
class Verdict:
    kind: str  # "promoted" | "rolled_back"
    reason: str
    stats: dict[str, float]


@dataclass
class _Cohort:
    done_sum: float = 0.0
    done_n: int = 0
    inflight: dict[str, float] = field(default_factory=dict)  # id -> arrival_s

    def mean(self, now_s: float) -> tuple[float, int]:
        n = self.done_n + len(self.inflight)
        if n == 0:
            return float("nan"), 0
        censored = sum(max(0.0, now_s - a) for a in self.inflight.values())
        return (self.done_sum + censored) / n, n


class CanaryGuard:
    """Judges one canary version against one incumbent version."""

    def __init__(self, incumbent: int, canary: int, started_s: float, config: GuardConfig | None = None,
                 baseline_e2e_s: float | None = None):
        self.config = config or GuardConfig()
        self.baseline = baseline_e2e_s
        self.incumbent = incumbent
        self.canary = canary
        self.started_s = started_s
        self._cohorts = {incumbent: _Cohort(), canary: _Cohort()}
        self._version_of: dict[str, int] = {}

    def routes_to_canary(self, request_id: str) -> bool:
        return canary_bucket(request_id) < self.config.share

    def on_assign(self, request_id: str, version: int, arrival_s: float) -> None:
        cohort = self._cohorts.get(version)
        if cohort is None or arrival_s < self.started_s or request_id in self._version_of:
            return
        if len(self._version_of) >= self.config.max_tracked:
            return  # bounded: the verdict is long due by then anyway
        self._version_of[request_id] = version
        cohort.inflight[request_id] = arrival_s

    def on_complete(self, request_id: str, e2e_s: float) -> None:
        version = self._version_of.get(request_id)
        if version is None:
            return
        cohort = self._cohorts[version]
        if cohort.inflight.pop(request_id, None) is None:
            return  # duplicate completion
        cohort.done_sum += e2e_s
        cohort.done_n += 1

    def evaluate(self, now_s: float) -> Verdict | None:
        cfg = self.config
        inc_mean, inc_n = self._cohorts[self.incumbent].mean(now_s)
        can_mean, can_n = self._cohorts[self.canary].mean(now_s)
        can_done = self._cohorts[self.canary].done_n
        stats = {
            "incumbent_version": float(self.incumbent), "canary_version": float(self.canary),
            "incumbent_mean_e2e_s": inc_mean, "canary_mean_e2e_s": can_mean,
            "incumbent_n": float(inc_n), "canary_n": float(can_n), "canary_completed": float(can_done),
            "window_s": now_s - self.started_s,
        }
        if self.baseline is not None:
            stats["baseline_mean_e2e_s"] = self.baseline
        if inc_n >= cfg.min_samples and can_n >= cfg.min_samples:
            if can_mean > inc_mean * (1.0 + cfg.threshold):
                return Verdict("rolled_back", (
                    f"v{self.canary} mean E2E {can_mean:.3f}s is {100 * (can_mean / inc_mean - 1):.1f}% worse than "
                    f"v{self.incumbent}'s {inc_mean:.3f}s over the same window (threshold {100 * cfg.threshold:.0f}%, "
                    f"n={can_n}/{inc_n})"), stats)
            if self.baseline is not None and inc_mean > self.baseline * (1.0 + cfg.threshold):
                return Verdict("rolled_back", (
                    f"while v{self.canary} ran, v{self.incumbent}'s own mean E2E rose to {inc_mean:.3f}s from "
                    f"{self.baseline:.3f}s before the canary (> {100 * cfg.threshold:.0f}%): spill-over suspected"), stats)
            if can_done >= cfg.promote_after:
                return Verdict("promoted", (
                    f"v{self.canary} mean E2E {can_mean:.3f}s vs v{self.incumbent}'s {inc_mean:.3f}s after "
                    f"{can_done} completions: within the {100 * cfg.threshold:.0f}% threshold"), stats)
            return None
        if now_s - self.started_s > cfg.max_age_s:
            return Verdict("rolled_back", (
                f"v{self.canary} collected only {can_n}/{inc_n} requests in {now_s - self.started_s:.0f}s "
                f"(need {cfg.min_samples} each): cannot be judged"), stats)
        return None


class ProbationGuard:
    """Watches a just-promoted version serving all traffic against the served
    mean E2E from before its canary (see the module docstring)."""

    def __init__(self, version: int, previous: int, baseline_e2e_s: float, started_s: float,
                 config: GuardConfig | None = None):
        self.config = config or GuardConfig()
        self.version, self.previous, self.baseline, self.started_s = version, previous, baseline_e2e_s, started_s
        self._inflight: dict[str, float] = {}
        self._recent: deque[float] = deque(maxlen=self.config.promote_after)
        self._done = 0

    def on_assign(self, request_id: str, version: int, arrival_s: float) -> None:
        if version != self.version or arrival_s < self.started_s or request_id in self._inflight:
            return
        if len(self._inflight) < self.config.max_tracked:
            self._inflight[request_id] = arrival_s

    def on_complete(self, request_id: str, e2e_s: float) -> None:
        if self._inflight.pop(request_id, None) is not None:
            self._recent.append(e2e_s)
            self._done += 1

    def evaluate(self, now_s: float) -> Verdict | None:
        cfg = self.config
        n = len(self._recent) + len(self._inflight)
        mean = ((sum(self._recent) + sum(max(0.0, now_s - a) for a in self._inflight.values())) / n) if n else float("nan")
        stats = {"version": float(self.version), "to_version": float(self.previous), "mean_e2e_s": mean,
                 "baseline_mean_e2e_s": self.baseline, "n": float(n), "window_s": now_s - self.started_s}
        if n >= cfg.min_samples and mean > self.baseline * (1.0 + cfg.threshold):
            return Verdict("rolled_back", (
                f"v{self.version} at full traffic: mean E2E {mean:.3f}s is {100 * (mean / self.baseline - 1):.1f}% worse "
                f"than {self.baseline:.3f}s before its canary (threshold {100 * cfg.threshold:.0f}%, n={n})"), stats)
        if self._done >= cfg.promote_after and now_s - self.started_s >= cfg.probation_s:
            return Verdict("confirmed", f"v{self.version} held its latency at full traffic", stats)
        return None
