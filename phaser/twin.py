"""A digital twin of the live cluster, kept from the streams, and a learner that trains in it.

The trainer (``phaser trainer --twin``) feeds it every joined (assignment,
completion) pair; nothing here does I/O or reads a clock.

* **The recent mix** (``Twin.window``): the newest ``window`` requests with
  their true output lengths (from their completions), where each was routed,
  and what it measured (TTFT, mean TBT).
* **The instances** (``Twin.fit``): the router was told a profile per
  instance; the hardware may differ. The twin replays the window in the
  simulator *with the decisions actually made* (``Replay``: each request to
  the instance it went to) under the current estimate and compares each
  instance's median measured TBT with the replay's; the ratio rescales that
  instance's profile (``phaser.engine.profiles.scaled``, ``NAME@xK``). With the
  decisions fixed, each instance's replay depends on its own scale only, so
  every instance's scale is found by its own bisection in log scale over
  [0.05, 20] (``FIT_ITERATIONS`` replays, all instances at once). A
  multiplicative fixed-point update was tried first and oscillated (1.17 ↔
  2.1 for a true 1.6): near saturation the TBT grows faster than the scale,
  because a slower instance also batches more. Replaying the real decisions makes the comparison
  like-for-like: batching and prefill interference are simulated exactly as
  they happened, so they do not bias the fit. One scale per instance is the
  model (a slower or throttled GPU is slower in every kernel); a different
  shape would need ``phaser calibrate``'s full fit.
* **The routers' beliefs**: once a fit is good, the trainer tells the routers to plan with
  it (``PolicyUpdate(kind="profiles")``, ``TrainerCore.twin_profiles_update``; ``Twin.told``
  records what they were told): a router told the wrong hardware mis-estimates every
  instance's prefill and decode times, and no policy reading those estimates can fix that.
* **The candidate** (``train_candidate``): its simulated router is told what the live router
  is told (``Twin.told``, else ``nominal``: ``SimConfig.told``), while the engines run the fitted profiles,
  so the features it learns from are the ones it will be served with. The window is cut into ``segments``
  consecutive replays; even ones train, odd ones are held out. The candidate
  is the cross-family learner's student (``phaser.rl.families``), started
  from the better, on the training replays, of a clone of the best heuristic
  there (its tie sets on every state) and the incumbent when the incumbent is
  such a network; then, where the blindfolded lookahead beats that heuristic
  on a training replay, DAgger rounds on the lookahead's labels of the
  student's own states. Of the starts and each round, the best on the
  training replays is the candidate. Candidate and incumbent then run every held-out replay in the
  twin; ``TwinResult.wins`` only when the paired mean gain is at least
  ``min_gain_pct`` and the candidate wins on most held-out replays. Only a
  winner is published; the router's canary and guard then judge it on live
  traffic.
* **Refusals** (``TwinResult.outcome``, counted in the trainer's
  ``phaser_trainer_twin_rounds_total{outcome}``): a window under
  ``MIN_WINDOW`` requests trains nothing ("window"); a fit that leaves an
  instance without ``MIN_SAMPLES`` completions, or misses any instance's
  median TBT or TTFT by more than ``MAX_FIT_ERROR``, trains nothing ("fit");
  a candidate that does not win is not published ("lost").
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from phaser.errors import PhaserError

#: replays of the window per fit: bisection steps, each halves every instance's log-scale bracket
#: (12 steps from [0.05, 20]: within 0.15 %)
FIT_ITERATIONS = 12
#: completions per instance before its scale is fitted
MIN_SAMPLES = 20
#: requests in the window before a twin round is worth running (fewer: no candidate is trained)
MIN_WINDOW = 200
#: the largest relative error, on any fitted instance, of the replay's median TBT or median TTFT
#: (``engine_ttft``: from the instance's receipt) against what that instance measured, at the fitted scales; above it the twin does not publish.
#: TBT is what the scale is fitted to, so its error is the bisection's and the median's; TTFT is
#: not fitted, so its error tests the model itself (one time scale per instance): hardware whose
#: prefill and decode are off by different factors shows here.
MAX_FIT_ERROR = 0.15


class Replay:
    """A policy that routes each request where the live router sent it."""

    name = "replay"
    version = 0

    def __init__(self, where: dict[str, int]):
        self.where = where

    def decide(self, job, view) -> int:
        return self.where[job.id]


def engine_ttft(rec) -> float:
    """Time to first token from the instance's receipt of the request (a ``Completion`` or a
    simulator record): the queue wait there plus admission to first token. The live TTFT also
    holds the broker and router hops (18-20 % of the median at ``--time-scale 2``, measured
    2026-12-03), which are not the engine's and which the replay does not simulate."""
    return max(0.0, float(rec.queue_wait_s) + float(rec.first_token_s) - float(rec.admitted_s))


@dataclass
class Observed:
    request: object  # protos.Request with its true output length
    instance: int
    ttft_s: float     # engine_ttft: from the instance's receipt
    tbt_mean_s: float


@dataclass
class Twin:
    nominal: tuple[str, ...]             # the profile per instance the router was told
    window: int = 2000
    scheduler: str = "mixed"
    chunked_prefill: bool = False
    _obs: deque = field(default_factory=deque)
    scales: list[float] = field(default_factory=list)
    #: per instance, after the last fit: (TBT error, TTFT error), relative; None where it had too little data
    fit_errors: list = field(default_factory=list)
    #: what the live routers plan with now, when the trainer told them the fitted profiles
    #: (``PolicyUpdate(kind="profiles")``); None: ``nominal``
    told: tuple[str, ...] | None = None

    def __post_init__(self):
        from phaser.engine.profiles import get_profile

        if not self.nominal:
            raise PhaserError("the twin needs at least one instance profile")
        for p in self.nominal:
            get_profile(p)  # refuse unknown names now
        if self.window < 10:
            raise PhaserError(f"--twin-window must be >= 10 requests, got {self.window}")
        self._obs = deque(maxlen=self.window)
        self.scales = [1.0] * len(self.nominal)
        self.fit_errors = [None] * len(self.nominal)

    @property
    def n(self) -> int:
        return len(self.nominal)

    def observe(self, request, completion) -> None:
        """One served request: its assignment's request and its ``ok`` completion."""
        if completion.status != "ok" or not 0 <= completion.instance < self.n:
            return
        req = request.model_copy(update={"output_tokens": max(1, int(completion.output_tokens))})
        self._obs.append(Observed(req, completion.instance, engine_ttft(completion), float(completion.tbt_mean_s)))

    def __len__(self) -> int:
        return len(self._obs)

    def profiles(self, scales: list[float] | None = None) -> tuple[str, ...]:
        return tuple(p if abs(k - 1.0) < 1e-6 else f"{p}@x{k:.4g}"
                     for p, k in zip(self.nominal, scales or self.scales))

    def scenario(self, scales: list[float] | None = None):
        from phaser.bench.scenarios import Scenario

        names = self.profiles(scales)
        return Scenario("twin", "live-window", self.n, names[0], None, None, chunked_prefill=self.chunked_prefill,
                        scheduler=self.scheduler, profiles=names, told=tuple(self.told or self.nominal))

    def requests(self) -> list:
        """The window as a replayable workload (arrival-sorted, rebased to 0)."""
        obs = sorted(self._obs, key=lambda o: o.request.arrival_s)
        t0 = obs[0].request.arrival_s if obs else 0.0
        return [o.request.model_copy(update={"arrival_s": o.request.arrival_s - t0}) for o in obs]

    # -- the instances ----------------------------------------------------------------
    def fit(self, iterations: int = FIT_ITERATIONS) -> list[float]:
        """Per-instance time scales (see the module docstring); instances with fewer than
        ``MIN_SAMPLES`` multi-token completions keep their current scale."""
        from phaser.bench.runner import sim_config
        from phaser.predictor import CrossFitted
        from phaser.sim import simulate

        obs = list(self._obs)
        if not obs:
            return self.scales
        reqs = self.requests()
        where = {o.request.id: o.instance for o in obs}
        measured = [[o.tbt_mean_s for o in obs if o.instance == i and o.request.output_tokens > 1 and o.tbt_mean_s > 0]
                    for i in range(self.n)]
        ttft = [[o.ttft_s for o in obs if o.instance == i and o.ttft_s > 0] for i in range(self.n)]
        lo, hi = [math.log(0.05)] * self.n, [math.log(20.0)] * self.n
        fitted = [len(m) >= MIN_SAMPLES for m in measured]
        target = [float(np.median(m)) if m else 0.0 for m in measured]
        scales = list(self.scales)
        for _ in range(iterations):
            guess = [math.exp((a + b) / 2) if f else k for a, b, f, k in zip(lo, hi, fitted, scales)]
            res = simulate(reqs, Replay(where), sim_config(self.scenario(guess)), predictor=CrossFitted(reqs))
            for i in range(self.n):
                if not fitted[i]:
                    continue
                sim = [r.tbt_mean_s for r in res.records if r.instance == i and r.output_tokens > 1 and r.tbt_mean_s > 0]
                if not sim:
                    fitted[i] = False
                    continue
                if float(np.median(sim)) < target[i]:
                    lo[i] = math.log(guess[i])  # the replay is faster than what was measured: slower hardware
                else:
                    hi[i] = math.log(guess[i])
            scales = [math.exp((a + b) / 2) if f else k for a, b, f, k in zip(lo, hi, fitted, scales)]
        self.scales = scales
        # how well the fitted model explains what each instance measured (MAX_FIT_ERROR)
        res = simulate(reqs, Replay(where), sim_config(self.scenario(scales)), predictor=CrossFitted(reqs))
        errs = []
        for i in range(self.n):
            sim_tbt = [r.tbt_mean_s for r in res.records if r.instance == i and r.output_tokens > 1 and r.tbt_mean_s > 0]
            sim_ttft = [t for r in res.records if r.instance == i and (t := engine_ttft(r)) > 0]
            if not fitted[i] or not sim_tbt or not sim_ttft or not ttft[i]:
                errs.append(None)
                continue
            m_ttft = float(np.median(ttft[i]))
            errs.append((abs(float(np.median(sim_tbt)) - target[i]) / target[i],
                         abs(float(np.median(sim_ttft)) - m_ttft) / m_ttft))
        self.fit_errors = errs
        return scales

    def fit_problem(self) -> str:
        """Why the last fit is not good enough to train on ("" when it is)."""
        for i, e in enumerate(self.fit_errors):
            if e is None:
                n = sum(1 for o in self._obs if o.instance == i)
                return f"instance {i}: {n} completions in the window, too few to fit (need {MIN_SAMPLES})"
            if max(e) > MAX_FIT_ERROR:
                return (f"instance {i}: fitted x{self.scales[i]:.3g} misses its median TBT by {100 * e[0]:.0f} % and "
                        f"median TTFT by {100 * e[1]:.0f} % (bound {100 * MAX_FIT_ERROR:.0f} %)")
        return ""


# --- the candidate -------------------------------------------------------------------

@dataclass
class TwinResult:
    """``outcome``: "won" (publish), "lost" (judged, did not win), "fit" (the fitted profile is poor:
    not judged), "window" (too few requests: not trained)."""

    wins: bool
    gain_pct: float                  # candidate vs incumbent, paired mean over held-out replays
    wins_on: int                     # held-out replays the candidate won
    held_out: int
    scales: list[float]
    params: dict | None              # the candidate (flat), None if it could not be trained
    reason: str = ""
    detail: dict = field(default_factory=dict)
    outcome: str = "lost"


@dataclass(frozen=True)
class _TwinFamily:
    """What ``phaser.rl.families``' labelling and evaluation read of a family."""

    scenario: object
    name: str = "twin"
    trace: bool = False


def train_candidate(twin: Twin, incumbent, *, segments: int = 4, rounds: int = 2, labels_per_segment: int = 60,
                    updates: int = 1500, min_gain_pct: float = 0.5, seed: int = 0, incumbent_params: dict | None = None,
                    min_window: int = MIN_WINDOW) -> TwinResult:
    """Fit the instances, train a candidate on the training replays, judge it against
    ``incumbent`` (``(n, seed) -> policy``) on the held-out replays, all in the twin."""
    from phaser.policies import make_policy
    from phaser.rl.families import BASES, StudentConfig, fit, label_episode, mean_e2e, student, teacher_check

    reqs = twin.requests()
    if len(reqs) < max(min_window, 2 * segments * 5):
        return TwinResult(False, 0.0, 0, 0, twin.scales, None,
                          f"only {len(reqs)} requests in the window (need {max(min_window, 2 * segments * 5)})",
                          outcome="window")
    scales = twin.fit()
    if why := twin.fit_problem():
        return TwinResult(False, 0.0, 0, 0, scales, None, f"poor fit, not trained: {why}", outcome="fit",
                          detail={"fit_errors": twin.fit_errors})
    fam = _TwinFamily(twin.scenario(scales))
    n = twin.n
    bounds = np.linspace(0, len(reqs), segments + 1).astype(int)
    parts = []
    for a, b in zip(bounds, bounds[1:]):
        seg = reqs[a:b]
        t0 = seg[0].arrival_s
        parts.append([r.model_copy(update={"arrival_s": r.arrival_s - t0}) for r in seg])
    train, held = parts[0::2], parts[1::2]
    base = min(BASES, key=lambda h: np.mean([mean_e2e(fam, lambda s, h=h: make_policy(h, n, s), p, seed) for p in train]))
    cfg = StudentConfig(updates=updates)
    # the lookahead teaches only where it beats its base here (as in phaser.rl.families)
    teacher, _, _ = teacher_check(fam, train[0], seed, base, cfg.horizon_s)
    rng = np.random.default_rng(seed)

    def train_score(q) -> float:
        return float(np.mean([mean_e2e(fam, lambda s: student(q, cfg.hidden)(n, s), p, seed) for p in train]))

    # a clone of the base (its tie sets, every state), and the incumbent network when there is one:
    # the better of the two on the training replays starts the DAgger rounds
    data = [label_episode(fam, p, seed + k, base, lambda s: make_policy(base, n, s), 0, cfg.horizon_s, rng, "base")
            for k, p in enumerate(train)]
    clone, _ = fit({n: (np.concatenate([x for x, _ in data]), np.concatenate([y for _, y in data]))}, None, cfg, seed)
    pool = [clone] + ([incumbent_params] if incumbent_params is not None else [])
    params = min(pool, key=train_score)
    xs, ys = [], []
    for rnd in range(rounds if teacher == "lookahead" else 0):  # DAgger: the student's own states
        beh = (lambda s, p=params: student(p, cfg.hidden)(n, s))
        for k, p in enumerate(train):
            x, y = label_episode(fam, p, seed + k, base, beh, labels_per_segment, cfg.horizon_s, rng, teacher)
            xs.append(x)
            ys.append(y)
        params, _ = fit({n: (np.concatenate(xs), np.concatenate(ys))}, params, cfg, seed + rnd + 1)
        pool.append(params)
    # the best of the starts and each round on the training replays (the held-out ones judge it)
    params = min(pool, key=train_score)
    cand = [mean_e2e(fam, lambda s: student(params, cfg.hidden)(n, s), p, seed) for p in held]
    inc = [mean_e2e(fam, lambda s: incumbent(n, s), p, seed) for p in held]
    gains = [100.0 * (i - c) / i for i, c in zip(inc, cand) if i > 0 and math.isfinite(i)]
    gain = float(np.mean(gains)) if gains else 0.0
    won = sum(1 for g in gains if g > 0)
    ok = gain >= min_gain_pct and won * 2 > len(gains)
    why = (f"candidate {gain:+.2f}% vs the incumbent on {len(gains)} held-out replays (won {won}); "
           f"fitted time scales {', '.join(f'{k:.3g}' for k in scales)}; teacher {teacher} over {base}")
    return TwinResult(ok, gain, won, len(gains), scales, params, why,
                      {"candidate_e2e": cand, "incumbent_e2e": inc, "base": base, "teacher": teacher, "window": len(reqs),
                       "fit_errors": twin.fit_errors}, outcome="won" if ok else "lost")
