"""One learned router for every scenario family: DAgger on the blindfolded lookahead.

``phaser train-families`` runs this. Read top to bottom:

1. **Where it trains.** Each family of the leaderboard (``phaser.bench.leaderboard``:
   its cluster, profiles, scheduler, workload) at loads drawn from ``loads``
   (fractions of that family's capacity: the highest rate at which round
   robin meets the family's SLO, found here on a *training* draw). Episodes
   are training draws only: synthetic workloads use seeds
   ``TRAIN_SEED_BASE + 1000·seed + k``; replayed traces their training windows
   (``phaser.rl.windows``), retimed to the episode's rate. Model selection uses
   the selection draws (seeds ``EVAL_SEED_BASE + i``, the traces' selection
   windows); the leaderboard's own draws (seeds 30,000+, the test windows) are
   never touched.
2. **The teacher**, per family: the one-step lookahead blindfolded to what a
   router knows (``phaser.sim.lookahead``, ``clairvoyant=False``: predicted
   lengths, no future arrivals) over that family's best base heuristic among
   ``BASES``, chosen on a selection draw. It costs one simulator fork per
   instance per decision (0.03–0.09 s a decision on 4–8 instances, 0.74 s on
   the 16-instance prefix-heavy cluster, measured 2026-12-03), so it labels a
   sample of ``labels_per_episode`` states per episode, never all of them.
3. **DAgger** (Ross et al. 2011): round 0 follows the base heuristic, each
   later round follows the student itself, and the teacher labels the states
   the behaviour policy visits; the data of every round is kept and the
   student is refitted on all of it, warm-started from the previous round.
   Label: the teacher's window cost per instance; the instances within
   ``TIE_REL`` of the cheapest all count as its choice, and among them the
   base heuristic's own choices win (one step of policy improvement keeps the
   base's action unless another is strictly better). The base's choices are
   its whole tie set (``policy.ties``: the instances its rule scored equally;
   dynamo-kv and llm-d draw among them at random, the others rotate), so the
   target is uniform over cheapest ∩ ties, else over the cheapest. Measured: without the
   tie-break, 16-instance prefix-heavy labels were mostly "any idle
   instance" (the blindfolded forks, seeing no future arrivals, do not value
   keeping a prefix for its followers), and the student trailed dynamo-kv by
   8–12 %. The tie-break alone did not close that gap (round 0: −0.4 % vs
   +9.6 %), because the blindfolded lookahead itself is the weaker policy
   there. So each family's teacher is **checked first**: the lookahead runs
   one selection draw at the highest selection load; where it does not beat
   its base heuristic there, that family's labels are the base's own picks
   (``teacher_kind`` "base", no forks: uniform over the base's tie set),
   else the lookahead's. Measured (2026-12-03): with one-hot labels of
   dynamo-kv's random pick, the student agreed with its labels 29 % of the
   time at 16 instances; the tie-set labels are the fix for that noise.
4. **The student**: the shared per-instance network (``phaser.rl.network``,
   ``arch="shared"``) on feature spec version 3 (``phaser.rl.features``: cache
   hits, this request's prefill time and the decode step on each instance's own
   profile), so one parameter set serves 4, 8 and 16 instances and mixed
   hardware. Loss: cross-entropy of the instance scores against the target
   (WAIT is not offered: ``allow_wait=False``). One jitted step per instance
   count (the batches of one update come from one instance count, drawn in
   proportion to its data).
5. **Selection**: after each round the student runs on the selection draws of
   every family at ``eval_loads``; the round with the highest mean paired gain
   over round robin is kept. The per-cell table (student, round robin, the
   family's best base heuristic) is stored in the checkpoint.

Not here (yet): RL fine-tuning with the paper's reward and HuRL after the
imitation, and the WAIT action; the student imitates, it does not explore.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from phaser.rl.features import FeatureSpec

#: the student's feature spec version (see the module docstring)
SPEC_VERSION = 3
#: heuristics the teacher may roll forward; the family's best on a selection draw is used
BASES = ("workload-aware", "dynamo-kv", "least-requests", "prefix-aware")
#: instances whose lookahead cost is within this share of the cheapest all count as the teacher's choice
TIE_REL = 1e-3
NAME = "rl-families"


@dataclass(frozen=True)
class StudentConfig:
    """The student and its fit: what ``fit``, ``label_episode`` and ``student`` read (the twin uses
    these alone; ``FamiliesConfig.student`` is the cross-family run's)."""

    hidden: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-3
    batch_size: int = 256
    updates: int = 3000               # Adam steps per fit
    max_grad_norm: float = 10.0
    horizon_s: float = 10.0           # the teacher's lookahead window


@dataclass(frozen=True)
class FamiliesConfig:
    families: tuple[str, ...] = ("paper", "paper-16gb", "kv-starved", "bursty-long-prompt", "conversation", "heterogeneous",
                                 "prefix-heavy")
    loads: tuple[float, ...] = (0.3, 0.5, 0.8, 0.95, 1.1, 1.3)
    eval_loads: tuple[float, ...] = (0.8, 1.1)
    rounds: int = 3
    episodes_per_family: int = 4      # per round
    labels_per_episode: int = 80
    n_requests: int = 400             # per synthetic draw (traces: their 180 s windows)
    eval_draws: int = 2               # selection draws per family and load
    horizon_s: float = 10.0
    hidden: tuple[int, ...] = (64, 64)
    learning_rate: float = 1e-3
    batch_size: int = 256
    updates_per_round: int = 3000
    max_grad_norm: float = 10.0

    def __post_init__(self):
        from phaser.bench.leaderboard import FAMILIES

        bad = [f for f in self.families if f not in FAMILIES]
        if bad:
            raise ValueError(f"unknown family {bad[0]!r}; known: {', '.join(FAMILIES)}")
        if not self.families or self.rounds < 1 or self.episodes_per_family < 1 or self.labels_per_episode < 1:
            raise ValueError("families, rounds, episodes per family and labels per episode must be at least 1")
        if any(not 0 < x <= 3 for x in self.loads + self.eval_loads):
            raise ValueError("loads are fractions of capacity in (0, 3]")

    @property
    def student(self) -> StudentConfig:
        return StudentConfig(self.hidden, self.learning_rate, self.batch_size, self.updates_per_round,
                             self.max_grad_norm, self.horizon_s)


# --- 1. the families' draws ---------------------------------------------------------

def draw(fam, seed: int, rate: float | None, n: int) -> list:
    """A family's requests: synthetic seed ``seed``, or the trace window ``seed`` maps to, at ``rate``."""
    from phaser.bench.leaderboard import family_draw

    return family_draw(fam, seed, rate, n)


def selection_seeds(fam, k: int) -> list[int]:
    from phaser.rl.windows import EVAL_SEED_BASE, TraceWindows

    if fam.trace:
        return TraceWindows(fam.scenario.workload).seeds("select")[:k]
    return [EVAL_SEED_BASE + i for i in range(k)]


def train_capacity(fam, n: int, seed: int, draws: int = 3) -> float:
    """Round robin's capacity at the family's SLO: the median over ``draws`` training draws (the
    leaderboard finds its own on its draws). One draw's p99-based capacity is noisy — on the
    trace families two windows differ by up to 3.5× (2026-12-03) — hence the median, and
    training loads wide enough (0.3–1.3 ×) to cover the spread."""
    from phaser.bench import runner
    from phaser.bench.capacity import DEFAULT_SLO_TBT_P99, DEFAULT_SLO_TTFT_P99, find_capacity
    from phaser.rl.training import TRAIN_SEED_BASE

    out = []
    for j in range(draws):
        s = TRAIN_SEED_BASE + 1000 * seed + 999 - j
        start = fam.scenario.rate or runner.mean_rate(draw(fam, s, None, n)) or 1.0
        res = find_capacity(lambda r, s=s: runner.run_one(fam.scenario, "round-robin", s, requests=draw(fam, s, r, n))[0],
                            start, slo_ttft_p99=fam.slo_ttft or DEFAULT_SLO_TTFT_P99, slo_tbt_p99=DEFAULT_SLO_TBT_P99,
                            iterations=5)
        out.append(res.capacity_rps if res.capacity_rps > 0 else start)
    return float(np.median(out))


def mean_e2e(fam, policy_factory: Callable[[int], object], reqs: list, seed: int) -> float:
    from phaser.rl.training import mean_e2e as scenario_mean_e2e

    return scenario_mean_e2e(fam.scenario, policy_factory, reqs, seed)


def heuristic(name: str, n: int) -> Callable[[int], object]:
    from phaser.policies import make_policy

    return lambda s: make_policy(name, n, s)


# --- 2.-3. labels: the teacher on the behaviour policy's states -------------------

def teacher_target(costs: list[float] | None, prefer: Sequence[int] = (), n: int | None = None) -> np.ndarray:
    """The teacher's choice as a distribution over instances.

    ``prefer`` is the base heuristic's tie set (the instances its rule found equally good; its pick is
    one of them). With lookahead ``costs``: uniform over the cheapest instances that are also in
    ``prefer``, else over the cheapest. Without costs (teacher "base"): uniform over ``prefer`` —
    a rule that breaks ties at random teaches its whole tie set, not the instance its RNG drew."""
    if costs is None:
        t = np.zeros(int(n), np.float32)
        t[list(prefer)] = 1.0
        return t / t.sum()
    c = np.asarray(costs, np.float64)
    lo = c.min()
    near = c <= lo + max(1e-9, TIE_REL * abs(lo))
    mine = np.zeros_like(near)
    mine[[k for k in prefer if 0 <= k < len(c)]] = True
    if (near & mine).any():
        near = near & mine
    return (near / near.sum()).astype(np.float32)


def teacher_check(fam, reqs: list, seed: int, base: str, horizon_s: float) -> tuple[str, float, float]:
    """("lookahead" or "base", the lookahead's mean E2E, the base's) on one selection draw."""
    from phaser.bench.runner import sim_config
    from phaser.policies import make_policy
    from phaser.predictor import CrossFitted
    from phaser.sim import ClusterSim
    from phaser.sim.lookahead import lookahead_run

    n = fam.scenario.instances
    sim = ClusterSim(reqs, sim_config(fam.scenario), predictor=CrossFitted(reqs), seed=seed)
    lookahead_run(sim, make_policy(base, n, seed), horizon_s, clairvoyant=False)
    la = float(sim.summary_dict()["e2e_mean"])
    b = mean_e2e(fam, heuristic(base, n), reqs, seed)
    return ("lookahead" if la < b else "base"), la, b


def label_episode(fam, reqs: list, seed: int, base: str, behaviour: Callable[[int], object], n_labels: int,
                  horizon_s: float, rng: np.random.Generator, teacher: str = "lookahead") -> tuple[np.ndarray, np.ndarray]:
    """Run ``behaviour(seed)`` on ``reqs``; the lookahead teacher labels about ``n_labels`` of the states
    it visits (``teacher`` "base": the base heuristic's tie set labels every state)."""
    from phaser.bench.runner import sim_config
    from phaser.policies import make_policy
    from phaser.predictor import CrossFitted
    from phaser.rl.features import Encoder
    from phaser.sim import ClusterSim
    from phaser.sim.lookahead import Lookahead

    n = fam.scenario.instances
    sim = ClusterSim(reqs, sim_config(fam.scenario), predictor=CrossFitted(reqs), seed=seed)
    la = Lookahead(sim, make_policy(base, n, seed), horizon_s, clairvoyant=False)
    act = behaviour(seed)
    enc = Encoder(FeatureSpec(n, SPEC_VERSION))
    # the lookahead costs a fork per instance per label, so it labels a sample; the base's own
    # choices cost nothing, so every state is labelled
    p = 1.0 if teacher == "base" else min(1.0, n_labels / max(1, len(reqs)))
    xs, ys = [], []
    while (d := sim.next_decision()) is not None:
        job, view = d
        labelled = rng.random() < p
        costs = la.costs() if labelled and teacher == "lookahead" else None
        x = enc(job, view) if labelled else None
        mine = la.base.decide(job, view)  # keeps the forks' base in step (Lookahead.observe); its tie set breaks ties
        if labelled:
            xs.append(x)
            ys.append(teacher_target(costs, getattr(la.base, "ties", None) or [mine], n))
        a = act.decide(job, view)
        sim.apply(a)
    dim = FeatureSpec(n, SPEC_VERSION).size
    return (np.asarray(xs, np.float32).reshape(-1, dim), np.asarray(ys, np.float32).reshape(-1, n))


# --- 4. the student --------------------------------------------------------------

def checkpoint_meta(n_instances: int, hidden: tuple[int, ...], **extra) -> dict:
    """The metadata of an rl-families checkpoint (``train-families`` and the trainer's twin both write them)."""
    from phaser.rl.checkpoint import spec_metadata
    from phaser.rl.config import DQNConfig

    dq = DQNConfig(variant=NAME, arch="shared", hidden=tuple(hidden), allow_wait=False)
    return {"variant": NAME, "arch": "shared", "n_instances": int(n_instances),
            "feature_spec": spec_metadata(FeatureSpec(n_instances, SPEC_VERSION)), "config": dq.to_dict(), **extra}


def student(params: dict, hidden: tuple[int, ...]) -> Callable[[int, int], object]:
    """(n_instances, seed) → the student as a routing policy."""
    from phaser.rl.policy import RLPolicy

    return lambda n, s: RLPolicy(params, "shared", len(hidden), FeatureSpec(n, SPEC_VERSION), name=NAME, seed=s,
                                 allow_wait=False)


def fit(data: dict[int, tuple[np.ndarray, np.ndarray]], params: dict | None, cfg: StudentConfig,
        seed: int) -> tuple[dict, dict]:
    """Cross-entropy of the instance scores against the teacher's targets, on every instance count's data."""
    import jax
    import jax.numpy as jnp
    import optax

    from phaser.rl import network

    rng = np.random.default_rng(seed)
    sizes = {n: len(x) for n, (x, _) in data.items() if len(x)}
    ns = sorted(sizes)
    nets = {n: network.build("shared", n, cfg.hidden) for n in ns}
    if params is None:
        n0 = ns[0]
        p = network.init_params(nets[n0], n0, jax.random.PRNGKey(seed), FeatureSpec(n0, SPEC_VERSION).size)
    else:
        p = network.unflatten(params)
    tx = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(cfg.learning_rate))
    opt = tx.init(p)

    def make_step(net):
        def loss_fn(p, x, y):
            logits = net.apply({"params": p}, x)[..., :-1]  # instance scores; WAIT is not offered
            ce = -(y * jax.nn.log_softmax(logits)).sum(-1).mean()
            agree = (y[jnp.arange(y.shape[0]), logits.argmax(-1)] > 0).mean()
            return ce, agree

        def step(p, opt, x, y):
            (loss, agree), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, y)
            upd, opt = tx.update(g, opt, p)
            return optax.apply_updates(p, upd), opt, loss, agree

        return jax.jit(step)

    steps = {n: make_step(nets[n]) for n in ns}
    w = np.array([sizes[n] for n in ns], float)
    w /= w.sum()
    last: dict[int, list] = {n: [] for n in ns}
    for k in range(cfg.updates):
        n = ns[int(rng.choice(len(ns), p=w))]
        x, y = data[n]
        idx = rng.integers(0, len(x), min(cfg.batch_size, len(x)))
        p, opt, loss, agree = steps[n](p, opt, x[idx], y[idx])
        if k >= cfg.updates - 200:
            last[n].append((float(loss), float(agree)))
    stats = {str(n): {"labels": sizes[n], "ce": round(float(np.mean([a for a, _ in v])), 4),
                      "agreement": round(float(np.mean([b for _, b in v])), 4)} for n, v in last.items() if v}
    return network.flatten(p), stats


# --- 5. the loop -------------------------------------------------------------------

@dataclass
class FamiliesReport:
    checkpoint: Path
    rounds: list[dict]
    selection: list[dict]
    best_round: int
    wall_s: float
    bases: dict[str, str] = field(default_factory=dict)
    capacities: dict[str, float] = field(default_factory=dict)
    teachers: dict[str, dict] = field(default_factory=dict)


def _gain(ref: list[float], mine: list[float]) -> float:
    return float(np.mean([100.0 * (r - m) / r for r, m in zip(ref, mine)]))


def train_families(cfg: FamiliesConfig, seed: int, out: str | Path,
                   progress: Callable[[str], None] = lambda s: None) -> FamiliesReport:
    from phaser.bench.leaderboard import FAMILIES
    from phaser.rl.checkpoint import save_checkpoint
    from phaser.rl.training import TRAIN_SEED_BASE

    t0 = time.perf_counter()
    fams = [FAMILIES[f] for f in cfg.families]
    rng = np.random.default_rng(seed)
    caps = {f.name: train_capacity(f, cfg.n_requests, seed) for f in fams}
    progress("capacities (round robin at the SLO, training draw): "
             + ", ".join(f"{k} {v:.2f} req/s" for k, v in caps.items()))

    # the selection cells and their references (round robin, every base heuristic)
    cells = []
    for f in fams:
        n = f.scenario.instances
        for load in cfg.eval_loads:
            draws = [(s, draw(f, s, load * caps[f.name], cfg.n_requests)) for s in selection_seeds(f, cfg.eval_draws)]
            ref = {h: [mean_e2e(f, heuristic(h, n), r, s) for s, r in draws] for h in ("round-robin",) + BASES}
            cells.append({"family": f.name, "load": load, "draws": draws, "ref": ref})
    bases = {}
    for f in fams:
        mine = [c for c in cells if c["family"] == f.name]
        bases[f.name] = min(BASES, key=lambda h: np.mean([np.mean(c["ref"][h]) for c in mine]))
    progress("teacher bases (best on selection draws): " + ", ".join(f"{k} {v}" for k, v in bases.items()))
    teachers, checks = {}, {}
    for f in fams:
        c = max((c for c in cells if c["family"] == f.name), key=lambda c: c["load"])
        s0, reqs0 = c["draws"][0]
        teachers[f.name], la_e2e, b_e2e = teacher_check(f, reqs0, s0, bases[f.name], cfg.horizon_s)
        checks[f.name] = {"lookahead_e2e": round(la_e2e, 4), "base_e2e": round(b_e2e, 4), "teacher": teachers[f.name]}
    progress("teachers (the lookahead where it beats its base on a selection draw): "
             + ", ".join(f"{k} {v} ({checks[k]['lookahead_e2e']:.3f} vs {checks[k]['base_e2e']:.3f} s)"
                         for k, v in teachers.items()))

    data: dict[int, list] = {}
    params = None
    rounds, best = [], {"score": -math.inf, "params": None, "round": -1, "table": []}
    k_draw = 0
    for rnd in range(cfg.rounds):
        t_round = time.perf_counter()
        for f in fams:
            n = f.scenario.instances
            beh = heuristic(bases[f.name], n) if params is None else (lambda s, n=n, p=params: student(p, cfg.hidden)(n, s))
            for _ in range(cfg.episodes_per_family):
                load = float(rng.choice(cfg.loads))
                s = TRAIN_SEED_BASE + 1000 * seed + k_draw
                k_draw += 1
                reqs = draw(f, s, load * caps[f.name], cfg.n_requests)
                x, y = label_episode(f, reqs, s, bases[f.name], beh, cfg.labels_per_episode, cfg.horizon_s, rng,
                                     teachers[f.name])
                data.setdefault(n, []).append((x, y))
        merged = {n: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for n, v in data.items()}
        params, fit_stats = fit(merged, params, cfg.student, seed + rnd)
        table = []
        for c in cells:
            f = FAMILIES[c["family"]]
            n = f.scenario.instances
            mine = [mean_e2e(f, lambda s, n=n: student(params, cfg.hidden)(n, s), r, s) for s, r in c["draws"]]
            rr = c["ref"]["round-robin"]
            best_h = min(BASES, key=lambda h: np.mean(c["ref"][h]))
            table.append({"family": c["family"], "load": c["load"], "student_e2e": round(float(np.mean(mine)), 4),
                          "round_robin_e2e": round(float(np.mean(rr)), 4), "gain_pct": round(_gain(rr, mine), 3),
                          "best_heuristic": best_h, "best_heuristic_gain_pct": round(_gain(rr, c["ref"][best_h]), 3)})
        score = float(np.mean([r["gain_pct"] for r in table]))
        row = {"round": rnd, "labels": {str(n): int(len(v[0])) for n, v in merged.items()}, "fit": fit_stats,
               "selection_mean_gain_pct": round(score, 3), "wall_s": round(time.perf_counter() - t_round, 1)}
        rounds.append(row)
        progress(f"round {rnd}: mean selection gain over round robin {score:+.2f}% "
                 + " ".join(f"{r['family']}@{r['load']:g} {r['gain_pct']:+.1f}%({r['best_heuristic_gain_pct']:+.1f})"
                            for r in table) + f"; {row['wall_s']:.0f}s")
        if score > best["score"]:
            best.update(score=score, params=params, round=rnd, table=table)

    wall = time.perf_counter() - t0
    meta = checkpoint_meta(
        4, cfg.hidden,
        families={**asdict(cfg), "seed": seed, "bases": bases, "teachers": checks, "train_capacity_rps": caps},
        stats={"rounds": rounds, "best_round": best["round"], "selection": best["table"], "train_wall_s": round(wall, 1)})
    ckpt = save_checkpoint(out, best["params"], meta)
    return FamiliesReport(ckpt, rounds, best["table"], best["round"], wall, bases, caps, checks)
