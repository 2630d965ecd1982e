"""The cost of router replicas: ``phaser bench replicas``.

R router replicas each decide the requests whose id hashes to them (Kafka's
keyed partitioning of ``requests``), each with its own ``ClusterView`` and its
own policy object, and each sees the other replicas' assignments
``replica_delay_s`` late (``phaser.sim.SimConfig.replicas``); completions and
heartbeats reach every replica as they reach one router. Per policy, replica
count and delay, on the same requests (paired by seed): mean E2E and its
change against the same policy with one router, mean ± 95 % CI over seeds.

What this separates: **stale sharing** (a replica picks an instance the
others have just loaded, unseen: grows with the delay and the arrival rate)
and **uncoordinated state** (each replica's own round-robin counter, its own
random stream: present at zero delay). Decisions (stated): the replicas share
one FIFO head-of-line (a WAIT by one holds the others' requests too; no
heuristic here waits); ``ReplicaSet`` policies are built with seeds
``seed .. seed+R-1`` so randomized pickers do not draw the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from phaser.bench.scenarios import Scenario

REPLICAS = (1, 2, 4, 8)
DELAYS_S = (0.0, 0.02, 0.05, 0.2)
POLICIES = ("round-robin", "random", "power-of-two", "least-requests", "least-tokens", "workload-aware", "llm-d")
#: the default scenario: the leaderboard's paper-16gb family (4 x V100-16GB, vLLM V0), where routing matters
DEFAULT = Scenario("replicas-kv-starved", "paper-mix", 4, "v100-16gb-llama2-7b", 5.0, 1000, scheduler="vllm-v0")


def run_replicas(sc: Scenario = DEFAULT, policies=POLICIES, replicas=REPLICAS, delays=DELAYS_S, seeds: int = 3,
                 rate: float | None = None, progress: Callable[[str], None] = lambda m: None) -> dict:
    from phaser.bench import runner
    from phaser.bench.stats import mean_ci
    from phaser.policies import make_policy
    from phaser.predictor import CrossFitted
    from phaser.sim import simulate

    cells: dict[tuple, list[dict]] = {}
    for seed in range(seeds):
        reqs = runner.load_requests(sc, seed, rate)
        pred = CrossFitted(reqs)
        base_cfg = runner.sim_config(sc)
        for pol in policies:
            for R in replicas:
                for d in (delays if R > 1 else (0.0,)):
                    cfg = dataclasses.replace(base_cfg, replicas=R, replica_delay_s=d)
                    ps = [make_policy(pol, sc.instances, seed + r) for r in range(R)]
                    res = simulate(reqs, ps if R > 1 else ps[0], cfg, pred, seed)
                    s = res.summary
                    cells.setdefault((pol, R, d), []).append(
                        {"seed": seed, "e2e_mean": s["e2e_mean"], "ttft_p99": s["ttft_p99"], "preemptions": s["preemptions"]})
            progress(f"seed {seed}: {pol} done")
    rows = []
    for (pol, R, d), runs in sorted(cells.items()):
        base = cells[(pol, 1, 0.0)]
        change = [100.0 * (r["e2e_mean"] - b["e2e_mean"]) / b["e2e_mean"] for r, b in zip(runs, base)]
        e, e_ci = mean_ci([r["e2e_mean"] for r in runs])
        c, c_ci = mean_ci(change)
        rows.append({"policy": pol, "replicas": R, "delay_s": d, "e2e_mean": e, "e2e_mean_ci95": e_ci,
                     "change_vs_one_router_pct": c, "change_ci95": c_ci,
                     "ttft_p99": sum(r["ttft_p99"] for r in runs) / len(runs),
                     "preemptions": sum(r["preemptions"] for r in runs) / len(runs)})
    return {"scenario": sc.as_dict(), "rate": rate if rate is not None else sc.rate, "seeds": seeds,
            "replicas": list(replicas), "delays_s": list(delays), "rows": rows}


def table(result: dict):
    from rich.table import Table

    reps = [r for r in result["replicas"] if r > 1]
    cols = [(R, d) for R in reps for d in result["delays_s"]]
    t = Table(title=f"router replicas on {result['scenario']['name']} ({result['scenario']['workload']}, "
                    f"{result['scenario']['instances']} x {result['scenario']['profile']}, {result['rate']} req/s): "
                    f"mean E2E change vs one router, % (mean ± 95% CI of {result['seeds']} seeds)", header_style="bold")
    t.add_column("policy")
    t.add_column("1 router E2E s", justify="right")
    for R, d in cols:
        t.add_column(f"{R} x {d * 1000:g} ms", justify="right")
    by = {(r["policy"], r["replicas"], r["delay_s"]): r for r in result["rows"]}
    for pol in dict.fromkeys(r["policy"] for r in result["rows"]):
        one = by[(pol, 1, 0.0)]
        cells = []
        for R, d in cols:
            r = by.get((pol, R, d))
            cells.append("-" if r is None else f"{r['change_vs_one_router_pct']:+.1f}±{r['change_ci95']:.1f}")
        t.add_row(pol, f"{one['e2e_mean']:.2f}", *cells)
    return t
