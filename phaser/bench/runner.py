"""Benchmark runner: policies x scenarios x rates x seeds in the simulator,
one row per run, aggregation over repeats, improvement over round robin.

Row fields (issue 2 item 5, kept; issue 5 adds the rest): scenario, policy,
workload, instances, profile, seed, n_requests, e2e_mean/p50/p90/p99,
ttft_mean/p50/p90/p99, tbt_mean/p99, router_wait_mean, preemptions,
simulated_seconds, wall_seconds, plus rate, heartbeat_delay_s and
completion_delay_s (None = the simulator's default, 0 s), policy_version, predictor and
``config`` (the full scenario and simulator configuration).

Predictions: each run predicts output lengths with 2-fold cross-fitted
histogram predictors (``phaser.predictor.CrossFitted``) trained on the run's
own workload, so the predictor is as good as one trained offline on this
traffic, yet no request's own length reaches its prediction.

Heuristics: ``--policies all`` means every registered policy whose name does
not ``rl`` or ``rl-*`` (learned policies need a checkpoint).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable

import numpy as np

from phaser.bench.scenarios import Scenario
from phaser.bench.stats import mean_ci
from phaser.errors import PhaserError
from phaser.policies import available, heuristics, is_learned, make_policy  # noqa: F401  (re-exported)

#: metrics aggregated over repeats and shown in the table
METRICS = ("e2e_mean", "e2e_p50", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p50", "ttft_p90", "ttft_p99",
           "tbt_mean", "tbt_p99", "router_wait_mean", "preemptions", "rejected")
ROW_FIELDS = ("scenario", "policy", "workload", "instances", "profile", "seed", "n_requests", "rate",
              *METRICS, "simulated_seconds", "wall_seconds")


def resolve_policies(spec: str) -> list[str]:
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "all":
            names.extend(heuristics())
        elif part in available():
            names.append(part)
        else:
            raise PhaserError(f"unknown policy {part!r}; known: all, {', '.join(available())}")
    if not names:
        raise PhaserError("--policies is empty")
    if "round-robin" in names:  # the baseline first, so improvements can be computed as rows arrive
        names.remove("round-robin")
        names.insert(0, "round-robin")
    return list(dict.fromkeys(names))


def load_requests(sc: Scenario, seed: int, rate: float | None = None) -> list:
    from load_generator.registry import load_workload

    w = load_workload(sc.workload, n=sc.n_requests, rate=rate if rate is not None else sc.rate, seed=seed)
    return list(getattr(w, "requests", w))


def sim_config(sc: Scenario, heartbeat_delay_s: float | None = None, completion_delay_s: float | None = None):
    from phaser.sim import SimConfig

    kw = dict(profiles=sc.profile_names(), chunked_prefill=sc.chunked_prefill,
              max_num_batched_tokens=sc.max_num_batched_tokens, scheduler=sc.scheduler, told=sc.told)
    if heartbeat_delay_s is not None:
        kw["heartbeat_delay_s"] = heartbeat_delay_s
    if completion_delay_s is not None:
        kw["completion_delay_s"] = completion_delay_s
    cfg = SimConfig(**kw)
    cfg.validate()  # negative delays etc. are user errors, before any simulation
    return cfg


def refused(sc: Scenario, reqs: list) -> tuple[int, str]:
    """(how many of ``reqs`` the scenario's instances can never serve, one example reason):
    longer than the model's context or than the whole KV cache. They become ``rejected``
    records, counted in every row."""
    from phaser.engine.instance import Instance
    from phaser.engine.profiles import get_profile

    insts = [Instance(0, get_profile(p)) for p in dict.fromkeys(sc.profile_names())]
    n, why = 0, ""
    for r in reqs:
        ws = [i.refusal(r) for i in insts]
        if all(w is not None for w in ws):  # no instance of the cluster can serve it
            n += 1
            why = why or ws[0]
    return n, why


def mean_rate(reqs: list) -> float | None:
    """Mean arrival rate (req/s) of a workload; None for fewer than 2 requests."""
    if len(reqs) < 2:
        return None
    return (len(reqs) - 1) / max(1e-9, reqs[-1].arrival_s - reqs[0].arrival_s)


def _pct(a: np.ndarray, q: float) -> float:
    return float(np.percentile(a, q)) if a.size else float("nan")


def run_one(sc: Scenario, policy_name: str, seed: int, *, rate: float | None = None,
            policy_options: dict | None = None, heartbeat_delay_s: float | None = None,
            completion_delay_s: float | None = None, requests: list | None = None,
            keep_records: bool = False) -> tuple[dict, list]:
    """Simulate one (scenario, policy, seed[, rate]); returns (row, records or [])."""
    from phaser.predictor import CrossFitted
    from phaser.sim import simulate

    reqs = requests if requests is not None else load_requests(sc, seed, rate)
    if not reqs:
        raise PhaserError(f"workload {sc.workload!r} produced no requests")
    predictor = CrossFitted(reqs)
    policy = make_policy(policy_name, sc.instances, seed, **(policy_options or {}))
    cfg = sim_config(sc, heartbeat_delay_s, completion_delay_s)
    t0 = time.perf_counter()
    res = simulate(reqs, policy, cfg, predictor, seed)
    wall = time.perf_counter() - t0
    s = dict(res.summary)
    ttft = np.fromiter((r.ttft_s for r in res.records), dtype=np.float64)
    eff_rate = rate if rate is not None else sc.rate
    if eff_rate is None:
        eff_rate = mean_rate(reqs)
    row = {
        "scenario": sc.name, "policy": policy_name, "workload": sc.workload, "instances": sc.instances,
        "profile": sc.profile, "seed": seed, "n_requests": int(s.get("n_requests", len(res.records))),
        "rate": float(eff_rate) if eff_rate is not None else None,
        "e2e_mean": s["e2e_mean"], "e2e_p50": s["e2e_p50"], "e2e_p90": s["e2e_p90"], "e2e_p99": s["e2e_p99"],
        "ttft_mean": s["ttft_mean"], "ttft_p50": _pct(ttft, 50), "ttft_p90": _pct(ttft, 90),
        "ttft_p99": s["ttft_p99"], "tbt_mean": s["tbt_mean"], "tbt_p99": s["tbt_p99"],
        "router_wait_mean": s["router_wait_mean"], "preemptions": s["preemptions"], "rejected": int(s.get("rejected", 0)),
        "simulated_seconds": s["simulated_seconds"], "wall_seconds": wall,
        "heartbeat_delay_s": heartbeat_delay_s, "completion_delay_s": completion_delay_s,
        "policy_version": getattr(policy, "version", 0), "predictor": predictor.name,
        "config": {"scenario": sc.as_dict(), "sim": _as_jsonable(cfg), "policy_options": policy_options or {},
                   "heartbeat_delay_s": heartbeat_delay_s, "completion_delay_s": completion_delay_s},
    }
    return row, (list(res.records) if keep_records else [])


def _as_jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {k: _as_jsonable(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _as_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_as_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return getattr(obj, "name", str(obj))


def run_grid(scenarios: Iterable[Scenario], policies: list[str], seeds: list[int], rates: list[float | None],
             *, policy_options: Callable[[str], dict] | None = None,
             heartbeat_delays: list[float | None] = (None,), completion_delays: list[float | None] = (None,),
             on_row: Callable[[dict, list], None] | None = None, keep_records: bool = False) -> list[dict]:
    """Every scenario x rate x seed x view delay x policy; a workload is loaded
    once per (scenario, rate, seed) and shared by all policies and delays
    (paired comparison). The delays (heartbeat, completion) are a sweep
    dimension so the cost of a stale view is one command."""
    rows = []
    for sc in scenarios:
        for rate in rates:
            for seed in seeds:
                reqs = load_requests(sc, seed, rate)
                for hb in heartbeat_delays:
                    for cd in completion_delays:
                        for pol in policies:
                            row, recs = run_one(sc, pol, seed, rate=rate, requests=reqs, keep_records=keep_records,
                                                policy_options=policy_options(pol) if policy_options else None,
                                                heartbeat_delay_s=hb, completion_delay_s=cd)
                            rows.append(row)
                            if on_row:
                                on_row(row, recs)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Group repeats (same scenario/policy/rate/instances/profile/view delays,
    different seeds): mean and 95% CI of every metric, and improvement of mean
    E2E over round robin on the same workload and delays (in %, positive =
    better)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["workload"], r["instances"], r["profile"], r["rate"],
                           r.get("heartbeat_delay_s"), r.get("completion_delay_s"), r["policy"]), []).append(r)
    out = []
    for key, rs in groups.items():
        a = {"scenario": key[0], "workload": key[1], "instances": key[2], "profile": key[3], "rate": key[4],
             "heartbeat_delay_s": key[5], "completion_delay_s": key[6],
             "policy": key[7], "repeats": len(rs), "seeds": [r["seed"] for r in rs],
             "n_requests": rs[0]["n_requests"], "wall_seconds": sum(r["wall_seconds"] for r in rs),
             "simulated_seconds": sum(r["simulated_seconds"] for r in rs)}
        for m in METRICS:
            # rows written before ``rejected`` was a column have none: they refused nothing they counted
            a[m], a[f"{m}_ci95"] = mean_ci([float(r[m] if m in r or m != "rejected" else 0) for r in rs])
        out.append(a)
    def same_run(a: dict) -> tuple:
        return (a["scenario"], a["workload"], a["instances"], a["profile"], a["rate"], a["heartbeat_delay_s"],
                a["completion_delay_s"])

    base = {same_run(a): a for a in out if a["policy"] == "round-robin"}
    by_seed = {k: {r["seed"]: r["e2e_mean"] for r in rs} for k, rs in groups.items()}
    for a, key in zip(out, groups):
        b = base.get(same_run(a))
        a["improvement_vs_rr_pct"] = (100.0 * (b["e2e_mean"] - a["e2e_mean"]) / b["e2e_mean"]
                                      if b and b["e2e_mean"] > 0 else None)
        # the paired gain: per seed against round robin on the same requests, mean and 95 % CI
        rr = by_seed.get(key[:7] + ("round-robin",), {})
        gains = [100.0 * (rr[s] - e) / rr[s] for s, e in by_seed[key].items() if rr.get(s, 0) > 0]
        a["gain_vs_rr_pct"], a["gain_vs_rr_ci95"] = mean_ci(gains) if gains else (None, None)
    return out


def strongest(agg: list[dict]) -> dict[tuple, dict]:
    """Per (scenario, rate, view delays): the heuristic with the lowest mean E2E."""
    best: dict[tuple, dict] = {}
    for a in agg:
        k = (a["scenario"], a["rate"], a.get("heartbeat_delay_s"), a.get("completion_delay_s"))
        if k not in best or a["e2e_mean"] < best[k]["e2e_mean"]:
            best[k] = a
    return best
