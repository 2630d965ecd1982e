"""Simulator vs real engine: the same requests through local llama.cpp servers
(``phaser up --engine llama.cpp``, the whole stack) and through the simulator
with a calibrated profile, compared per request and on the means.

Both sides route round robin over the same arrival order, so each request
meets the same instance on both; the live side's E2E includes the stack
(Kafka hops, the router), reported separately as ``router_wait``. Errors are
(simulated − real) ÷ real: of the means and medians, and the median of the
per-request absolute errors.
"""

from __future__ import annotations

import numpy as np


def _err(sim: float, real: float) -> float | None:
    return None if not real else round((sim - real) / real, 4)


def compare(live: dict, sim: dict) -> dict:
    """``live``/``sim``: request id -> record with ttft_s, e2e_s, tbt_mean_s (ok ones)."""
    ids = sorted(set(live) & set(sim))
    out: dict = {"requests": len(ids), "only_live": len(set(live) - set(sim)), "only_sim": len(set(sim) - set(live))}
    for f in ("e2e_s", "ttft_s", "tbt_mean_s"):
        lv = np.array([getattr(live[i], f) for i in ids], float)
        sv = np.array([getattr(sim[i], f) for i in ids], float)
        rel = np.abs(sv - lv) / np.maximum(lv, 1e-9)
        out[f] = {"real_mean": round(float(lv.mean()), 4), "sim_mean": round(float(sv.mean()), 4),
                  "mean_error": _err(float(sv.mean()), float(lv.mean())),
                  "real_p50": round(float(np.median(lv)), 4), "sim_p50": round(float(np.median(sv)), 4),
                  "p50_error": _err(float(np.median(sv)), float(np.median(lv))),
                  "per_request_abs_error_p50": round(float(np.median(rel)), 4)}
    out["router_wait_mean_s"] = round(float(np.mean([live[i].router_wait_s for i in ids])), 4)
    return out


def run_engine_fidelity(profile: str, workload: str, requests: int, rate: float, seed: int = 0, instances: int = 2,
                        slots: int = 4, ctx_per_slot: int = 2048) -> dict:
    from load_generator.registry import load_workload
    from phaser.engine.profiles import get_profile
    from phaser.policies import make_policy
    from phaser.sim.simulator import SimConfig, simulate
    from services.up import UpConfig, run_up

    prof = get_profile(profile)
    reqs = load_workload(workload, n=requests, rate=rate, seed=seed)
    sim = simulate(reqs, make_policy("round-robin", instances), SimConfig(instances=instances, profile=profile))
    cap: dict = {}
    summary = run_up(UpConfig(requests=requests, workload=workload, rate=rate, seed=seed, instances=instances,
                              engine="llama.cpp", engine_slots=slots, engine_ctx_per_slot=ctx_per_slot, time_scale=1.0,
                              policy="round-robin", profile=profile, trainer=False, monitor=False, drain_timeout_s=120.0),
                     capture=cap)
    live = {c.request_id: c for c in cap.get("completions", ()) if c.status == "ok"}
    simd = {r.id: r for r in sim.records}
    out = compare(live, simd)
    out.update({"profile": prof.name, "workload": workload, "requests_sent": requests, "rate": rate, "seed": seed,
                "instances": instances, "lost": summary["lost"], "rejected": summary["rejected"],
                "failed": summary["failed"], "same_instance": sum(live[i].instance == simd[i].instance
                                                                  for i in set(live) & set(simd))})
    return out
