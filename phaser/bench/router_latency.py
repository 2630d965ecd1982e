"""Router-latency benchmark: wall time of one ``policy.decide`` call.

A cluster view of ``n`` instances is driven with a steady load: paper-mix jobs
arrive every ``gap_s`` seconds, each is routed by the policy under test and
assigned, and a request completes ``hold`` decisions after it was assigned, so
every instance carries a realistic number of outstanding requests (default 32
per instance, the order of a loaded vLLM batch). Only ``decide`` is timed
(``time.perf_counter_ns``); view upkeep is the router's, not the policy's. The
first ``warmup`` decisions are discarded (caches, JIT).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.policies import make_policy
from phaser.predictor import LengthPredictor
from phaser.types import Job


@dataclass(frozen=True)
class LatencyResult:
    policy: str
    instances: int
    decisions: int
    p50_us: float
    p99_us: float
    mean_us: float


def measure(policy_name: str, n_instances: int, *, profile: str = "a100-llama3-8b", decisions: int = 2000,
            warmup: int = 200, per_instance: int = 32, gap_s: float = 0.01, seed: int = 0,
            policy_options: dict | None = None) -> LatencyResult:
    from load_generator.synthetic.paper_mix import paper_mix

    reqs = paper_mix(warmup + decisions, seed=seed).requests
    pred = LengthPredictor().fit(paper_mix(2000, seed=seed + 1).requests)
    view = ClusterView([get_profile(profile)] * n_instances)
    policy = make_policy(policy_name, n_instances, seed, **(policy_options or {}))
    hold = per_instance * n_instances
    live: list[tuple[str, int]] = []
    samples = np.empty(decisions, dtype=np.float64)
    for k, r in enumerate(reqs):
        t = k * gap_s
        view.advance_to(t)
        tokens, bucket = pred.predict(r)
        job = Job.from_request(r, tokens, bucket)
        t0 = time.perf_counter_ns()
        choice = policy.decide(job, view)
        dt = time.perf_counter_ns() - t0
        if k >= warmup:
            samples[k - warmup] = dt / 1e3
        inst = choice if choice is not None else k % n_instances
        view.on_assign(job, inst, t)
        live.append((job.id, inst))
        if len(live) > hold:
            rid, i = live.pop(0)
            view.on_complete(rid, i, t)
    return LatencyResult(policy_name, n_instances, decisions, float(np.percentile(samples, 50)),
                         float(np.percentile(samples, 99)), float(samples.mean()))
