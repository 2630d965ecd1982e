"""Training a router for a benchmark scenario: episodes, evaluation, curves, checkpoint.

``train_scenario`` is what ``phaser train`` runs:

* **Episodes** are independent draws of the scenario's workload: episode k of
  a run with ``--seed S`` uses workload seed ``TRAIN_SEED_BASE + 1000·S + k``,
  so no training episode is ever a benchmark or evaluation draw.
* **Predictions** come from ``phaser.predictor.CrossFitted`` on each episode's
  own requests — the same out-of-fold predictions ``phaser bench`` uses, so the
  agent trains on the prediction errors it will meet.
* **Evaluation** every ``eval_every`` episodes: the greedy policy on held-out
  workload seeds ``EVAL_SEED_BASE + i`` (disjoint from training seeds and from
  the bench's seeds 0…K−1, so model selection does not peek at the benchmark),
  compared with round-robin and the best heuristic (chosen on the same seeds at
  the start). The checkpoint keeps the parameters with the best evaluation mean
  E2E (standard model selection; the curve shows every evaluation).
* **Replayed traces** (``azure-code``, ``azure-conv``: one draw, the seed
  changes nothing): with ``windows`` (``phaser.rl.windows.TraceWindows``) the
  episodes are the trace's training windows, the evaluation runs on every
  selection window, and after training the kept parameters, round robin and
  the heuristics are run once on the test windows (``stats.test_e2e_per_window``
  of the checkpoint; ``phaser train`` prints the paired gains). Nothing is
  chosen on the test windows.
* **Outputs** in ``--out DIR``: ``v000001/`` (the checkpoint, see
  ``phaser.rl.checkpoint``), ``curves.csv`` (one row per episode, evaluation
  columns filled on evaluation episodes) and ``curves.png``.

Reproducible: for a given seed, episode seeds, network init, ε-draws and
replay sampling are all seeded; JAX on CPU is deterministic.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from phaser.bench.scenarios import Scenario
from phaser.rl.checkpoint import save_checkpoint, spec_metadata
from phaser.rl.dqn import DQNConfig, train
from phaser.rl.env import RouterEnv
from phaser.rl.features import FeatureSpec
from phaser.rl.policy import RLPolicy
from phaser.rl.windows import EVAL_SEED_BASE, TraceWindows

TRAIN_SEED_BASE = 10_000
#: Demonstration episodes of the imitation warm start: seed DEMO_SEED_BASE + 1000·S + i
#: (disjoint from training, evaluation and benchmark seeds).
DEMO_SEED_BASE = 20_000
#: Heuristics that are never "the best heuristic" candidates: random is a
#: floor, prefix-aware equals least-loaded without prefix ids (paper-mix has none).
NOT_CANDIDATES = ("random",)


# --- the scenario as simulator runs (the bench's own workload and cluster set-up) ---

def scenario_requests(sc: Scenario, seed: int, n_requests: int | None = None,
                      windows: TraceWindows | None = None) -> list:
    """The workload draw of ``seed``; with ``windows`` (a replayed trace) the window it maps to."""
    from load_generator import load_workload

    if windows is not None:
        return windows.requests(seed)
    return list(load_workload(sc.workload, n=n_requests or sc.n_requests, rate=sc.rate, seed=seed))


def make_sim_factory(sc: Scenario, n_requests: int | None = None,
                     windows: TraceWindows | None = None) -> Callable[[int], object]:
    """seed → a fresh steppable ``ClusterSim`` on that seed's workload draw."""
    from phaser.bench.runner import sim_config
    from phaser.predictor import CrossFitted
    from phaser.sim import ClusterSim

    cfg = sim_config(sc)

    def make(seed: int):
        reqs = scenario_requests(sc, seed, n_requests, windows)
        return ClusterSim(reqs, cfg, predictor=CrossFitted(reqs), seed=seed)

    return make


def evaluate(sc: Scenario, policy_factory: Callable[[int], object], seeds: list[int],
             n_requests: int | None = None, windows: TraceWindows | None = None) -> list[float]:
    """Mean E2E of ``policy_factory(seed)`` on each workload seed."""
    return [mean_e2e(sc, policy_factory, scenario_requests(sc, s, n_requests, windows), s) for s in seeds]


def mean_e2e(sc: Scenario, policy_factory: Callable[[int], object], reqs: list, seed: int) -> float:
    """Mean E2E of ``policy_factory(seed)`` on ``reqs`` in the scenario's cluster (the predictor
    cross-fitted on the requests, as the benchmark does)."""
    from phaser.bench.runner import sim_config
    from phaser.predictor import CrossFitted
    from phaser.sim import simulate

    res = simulate(reqs, policy_factory(seed), sim_config(sc), predictor=CrossFitted(reqs), seed=seed)
    return float(res.summary["e2e_mean"])


def heuristic_per_seed(sc: Scenario, seeds: list[int], n_requests: int | None = None,
                       names: list[str] | None = None, windows: TraceWindows | None = None) -> dict[str, list[float]]:
    """Mean E2E on each of ``seeds`` of round-robin and every heuristic candidate."""
    from phaser.policies import heuristics, make_policy

    if names is None:
        names = [p for p in heuristics() if p not in NOT_CANDIDATES]
    return {name: evaluate(sc, lambda s, nm=name: make_policy(nm, sc.instances, s), seeds, n_requests, windows)
            for name in names}


def heuristic_baselines(sc: Scenario, seeds: list[int], n_requests: int | None = None,
                        names: list[str] | None = None, windows: TraceWindows | None = None) -> dict[str, float]:
    """Mean E2E over ``seeds`` of round-robin and every heuristic candidate."""
    return {k: float(np.mean(v)) for k, v in heuristic_per_seed(sc, seeds, n_requests, names, windows).items()}


# --- training -------------------------------------------------------------------

@dataclass
class TrainReport:
    checkpoint: Path
    rows: list[dict]
    baselines: dict[str, float]
    best_heuristic: str
    best_eval_e2e: float
    best_episode: int
    wall_s: float
    extras: dict = field(default_factory=dict)


CURVE_FIELDS = ["episode", "seed", "return", "steps", "epsilon", "lam", "train_e2e_mean", "waits",
                "eval_e2e_mean", "eval_round_robin", "eval_best_heuristic", "wall_s"]


def train_scenario(sc: Scenario, cfg: DQNConfig, episodes: int, seed: int, out: str | Path, *,
                   eval_every: int = 5, eval_seeds: int = 3, n_requests: int | None = None,
                   baselines: list[str] | None = None, windows: TraceWindows | None = None,
                   on_progress: Callable[[dict], None] | None = None) -> TrainReport:
    out = Path(out)
    t_start = time.perf_counter()
    n = sc.instances
    spec = FeatureSpec(n)
    ev_seeds = [EVAL_SEED_BASE + i for i in range(eval_seeds)]
    if windows is not None:  # every selection window (the set is small and fixed)
        ev_seeds = windows.seeds("select")
    base = heuristic_baselines(sc, ev_seeds, n_requests, baselines, windows)
    rr = base.get("round-robin", math.nan)
    best_h = min((k for k in base if k != "round-robin"), key=base.get, default="round-robin")

    def rl_policy(params):
        return lambda s: RLPolicy(params, cfg.arch, len(cfg.hidden), spec, name=cfg.variant, seed=s,
                                  allow_wait=cfg.allow_wait)

    rows: list[dict] = []
    best = {"e2e": math.inf, "params": None, "episode": -1}

    def on_episode(st, params):
        ep = st.info
        row = {"episode": st.episode, "seed": st.seed, "return": round(st.ret, 4), "steps": st.steps,
               "epsilon": round(st.epsilon, 4), "lam": round(st.lam, 4),
               "train_e2e_mean": ep.get("e2e_mean"), "waits": ep.get("waits"),
               "eval_e2e_mean": None, "eval_round_robin": rr, "eval_best_heuristic": base.get(best_h)}
        done = sum(1 for r in rows if r["episode"] >= 0) + 1
        if done % eval_every == 0 or done == episodes:
            e2e = float(np.mean(evaluate(sc, rl_policy(params), ev_seeds, n_requests, windows)))
            row["eval_e2e_mean"] = e2e
            if e2e < best["e2e"]:
                best.update(e2e=e2e, params=params, episode=st.episode)
        row["wall_s"] = round(time.perf_counter() - t_start, 2)
        rows.append(row)
        if row["eval_e2e_mean"] is not None:  # keep the curves current during long runs
            write_curves(rows, out)
        if on_progress is not None:
            on_progress(row)

    make_sim = make_sim_factory(sc, n_requests, windows)
    make_env = lambda: RouterEnv.from_config(make_sim, n, cfg)  # noqa: E731
    init_params = replay = None
    extras: dict = {}
    if cfg.warm_start:
        # imitation warm start (phaser.rl.imitation); its evaluation is "episode −1"
        from phaser.rl.imitation import collect, pretrain

        demo_seeds = [DEMO_SEED_BASE + 1000 * seed + i for i in range(cfg.demo_episodes)]
        replay, demo_e2e = collect(make_env, cfg.warm_start, demo_seeds, cfg.buffer_size, cfg.lookahead_horizon_s)
        init_params, fit = pretrain(replay, n, cfg, seed)
        e2e = float(np.mean(evaluate(sc, rl_policy(init_params), ev_seeds, n_requests, windows)))
        best.update(e2e=e2e, params=init_params, episode=-1)
        extras = {"warm_start": cfg.warm_start, "demo_seeds": demo_seeds, "demo_e2e_mean": float(np.mean(demo_e2e)),
                  "demo_transitions": replay.size, **fit, "warm_start_eval_e2e_mean": e2e}
        rows.append({"episode": -1, "seed": None, "return": None, "steps": replay.size, "epsilon": None, "lam": None,
                     "train_e2e_mean": None, "waits": None, "eval_e2e_mean": e2e, "eval_round_robin": rr,
                     "eval_best_heuristic": base.get(best_h), "wall_s": round(time.perf_counter() - t_start, 2)})
    # the demonstrations seed the agent's replay (DQfD) and, kept apart, feed the margin loss
    demos = copy.deepcopy(replay) if cfg.warm_start and cfg.finetune_margin else None
    result = train(make_env, cfg, episodes, seed,
                   episode_seed=lambda k: TRAIN_SEED_BASE + 1000 * seed + k, on_episode=on_episode,
                   init_params=init_params, replay=replay, demos=demos)
    params = best["params"] if best["params"] is not None else result.params
    if windows is not None:
        # the held-out test windows, evaluated once, after selection (never used to choose)
        test_seeds = windows.seeds("test")
        test = heuristic_per_seed(sc, test_seeds, n_requests, list(base), windows)
        test[cfg.variant] = evaluate(sc, rl_policy(params), test_seeds, n_requests, windows)
        extras["windows"] = windows.as_dict()
        extras["test_e2e_per_window"] = test
    wall = time.perf_counter() - t_start
    meta = {
        "variant": cfg.variant, "arch": cfg.arch, "n_instances": n, "feature_spec": spec_metadata(spec),
        "config": cfg.to_dict(), "scenario": sc.as_dict(), "profile": sc.profile, "workload": sc.workload,
        "n_requests": n_requests or sc.n_requests,
        "stats": {"episodes": episodes, "seed": seed, "steps": result.steps, "updates": result.updates,
                  "best_episode": best["episode"], "best_eval_e2e_mean": best["e2e"],
                  "eval_seeds": ev_seeds, "eval_baselines": base, "best_heuristic": best_h,
                  "train_wall_s": round(wall, 1), **extras},
    }
    ckpt = save_checkpoint(out, params, meta)
    write_curves(rows, out)
    return TrainReport(ckpt, rows, base, best_h, best["e2e"], best["episode"], wall, extras)


# --- curves ----------------------------------------------------------------------

def write_curves(rows: list[dict], out: Path) -> tuple[Path, Path]:
    """``curves.csv`` and ``curves.png`` (training episode E2E and evaluation vs baselines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out / "curves.csv", out / "curves.png"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CURVE_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ret = [(r["episode"], r["return"]) for r in rows if r["return"] is not None]
    if ret:
        ax1.plot(*zip(*ret), lw=1)
    ax1.set(xlabel="episode", ylabel="return (scaled)", title="training return")
    tr = [(r["episode"], r["train_e2e_mean"]) for r in rows if r["train_e2e_mean"] is not None]
    if tr:
        ax2.plot(*zip(*tr), lw=0.8, alpha=0.5, label="training episode (ε-greedy)")
    ev = [(r["episode"], r["eval_e2e_mean"]) for r in rows if r["eval_e2e_mean"] is not None]
    if ev:
        ax2.plot(*zip(*ev), "o-", label="evaluation (greedy, held-out seeds)")
    if rows and rows[0]["eval_round_robin"] is not None:
        ax2.axhline(rows[0]["eval_round_robin"], color="grey", ls="--", label="round-robin")
        ax2.axhline(rows[0]["eval_best_heuristic"], color="green", ls=":", label="best heuristic")
    ax2.set(xlabel="episode", ylabel="mean E2E (s)", title="mean end-to-end latency")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return csv_path, png_path
