"""The cluster simulator: determinism, lazy engines vs a directly driven one,
router queue / WAIT / ticks, delayed heartbeats and completions, the RL
stepping hooks, summaries and record export."""

from __future__ import annotations

import csv
import dataclasses
import math
import random

import orjson
import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.instance import Instance
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from phaser.policies.round_robin import RoundRobin
from phaser.sim import ClusterSim, OraclePredictor, SimConfig, simulate, write_records
from protos.messages import Request

BENCH_FIELDS = ["n_requests", "e2e_mean", "e2e_p50", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p99", "tbt_mean",
                "tbt_p99", "router_wait_mean", "preemptions", "simulated_seconds", "wall_seconds"]


def workload(n, seed=0, rate=20.0):
    rng = random.Random(seed)
    t, out = 0.0, []
    for i in range(n):
        t += rng.expovariate(rate)
        out.append(Request(id=f"w{i}", arrival_s=t, prompt_tokens=rng.randint(20, 1200),
                           output_tokens=rng.randint(1, 400)))
    return out


class RandomPolicy:
    name, version = "random-test", 0

    def __init__(self, n, seed):
        self.n, self.rng = n, random.Random(seed)

    def decide(self, job, view):
        return self.rng.randrange(self.n)


class RecordingView(ClusterView):
    def __init__(self, profiles):
        super().__init__(profiles)
        self.status_lags, self.complete_lags, self.completed_at = [], [], {}

    def on_status(self, status, t):
        self.status_lags.append(t - status.ts_s)
        super().on_status(status, t)

    def on_complete(self, request_id, instance, t):
        self.completed_at[request_id] = t
        return super().on_complete(request_id, instance, t)


def strip(summary):
    return {k: v for k, v in summary.items() if k not in ("wall_seconds", "speedup", "requests_per_wall_s")}


def test_deterministic_for_a_seed():
    reqs = workload(400, seed=1, rate=30.0)
    cfg = SimConfig(instances=3, profile="v100-llama2-7b")
    a = simulate(reqs, RandomPolicy(3, 7), cfg, seed=5)
    b = simulate(reqs, RandomPolicy(3, 7), cfg, seed=5)
    assert [dataclasses.astuple(r) for r in a.records] == [dataclasses.astuple(r) for r in b.records]
    assert strip(a.summary) == strip(b.summary)
    c = simulate(reqs, RandomPolicy(3, 8), cfg, seed=5)  # another policy seed really changes things
    assert strip(c.summary) != strip(a.summary)


def test_one_instance_sim_equals_a_directly_driven_engine():
    """Lazy advancing (own events, heartbeats cutting open decode spans,
    assignments) must not change the result vs stepping every iteration."""
    reqs = workload(300, seed=2, rate=4.0)
    res = simulate(reqs, RoundRobin(1), SimConfig(instances=1, profile="a100-llama2-7b", heartbeat_period_s=0.07))
    inst = Instance(0, get_profile("a100-llama2-7b"), reference=True)  # iteration by iteration
    direct = []
    for r in reqs:
        direct += inst.advance(r.arrival_s)
        inst.add(r, r.arrival_s)
    direct += inst.advance(math.inf)
    by = {r.id: r for r in direct}
    assert len(res.records) == 300
    for rec in res.records:
        assert rec.finish_s == pytest.approx(by[rec.id].finish_s, rel=1e-9)
        assert rec.tbt_p99_s == pytest.approx(by[rec.id].tbt_p99_s, rel=1e-9)
        assert rec.router_wait_s == 0.0


def test_heartbeat_and_completion_delays_are_applied_and_do_not_change_round_robin():
    reqs = workload(300, seed=3, rate=15.0)
    runs = {}
    for hb, cd in ((0.0, 0.0), (0.3, 0.2)):
        cfg = SimConfig(instances=4, profile="a100-llama3-8b", heartbeat_period_s=0.25, heartbeat_delay_s=hb,
                        completion_delay_s=cd)
        view = RecordingView([get_profile("a100-llama3-8b")] * 4)
        res = simulate(reqs, RoundRobin(4), cfg, view=view)
        runs[hb] = res
        assert view.status_lags and all(lag == pytest.approx(hb) for lag in view.status_lags)
        fin = {r.id: r.finish_s for r in res.records}
        assert set(view.completed_at) == set(fin)
        assert all(view.completed_at[k] - fin[k] == pytest.approx(cd) for k in fin)
        assert res.statuses >= 4 * int(res.summary["simulated_seconds"] / 0.25) - 4
    a, b = runs[0.0], runs[0.3]
    assert [dataclasses.astuple(r) for r in a.records] == [dataclasses.astuple(r) for r in b.records]


class WaitThenFirst:
    """WAITs ``k`` times for every job, then picks instance 0; logs every ask."""

    name, version = "wait-test", 0

    def __init__(self, k):
        self.k, self.asks, self.log = k, {}, []

    def decide(self, job, view):
        self.log.append((job.id, view.now, view.router_queue_len))
        self.asks[job.id] = self.asks.get(job.id, 0) + 1
        return 0 if self.asks[job.id] > self.k else None


def test_wait_ticks_and_head_of_line_only():
    reqs = [Request(id=f"h{i}", arrival_s=1.0 + 0.001 * i, prompt_tokens=50, output_tokens=5) for i in range(3)]
    pol = WaitThenFirst(3)
    res = simulate(reqs, pol, SimConfig(instances=2, profile="a100-llama3-8b"))
    waits = {r.id: r.router_wait_s for r in res.records}
    assert waits["h0"] == pytest.approx(3 * 0.02)
    # h1 becomes head when h0 leaves (t = 1.06), then waits 3 more ticks
    assert waits["h1"] == pytest.approx(1.0 + 6 * 0.02 - 1.001)
    assert waits["h2"] == pytest.approx(1.0 + 9 * 0.02 - 1.002)
    ids = [a[0] for a in pol.log]
    assert ids == sorted(ids) and len(ids) == 12  # head only, FIFO, 4 asks each
    assert pol.log[0][2] == 1 and pol.log[1][2] == 3  # queue length seen by the policy
    assert res.summary["waits"] == 9 and res.summary["decisions"] == 12
    assert res.summary["router_wait_mean"] == pytest.approx(sum(waits.values()) / 3)


def test_steppable_api_and_reward_inputs():
    reqs = workload(120, seed=4, rate=40.0)
    sim = ClusterSim(reqs, SimConfig(instances=2, profile="v100-llama2-7b"), predictor=OraclePredictor())
    done, steps, last_t = 0, 0, 0.0
    while (d := sim.next_decision()) is not None:
        job, view = d
        assert sim.next_decision()[0] is job  # idempotent until applied
        assert job.predicted_tokens == next(r.output_tokens for r in reqs if r.id == job.id)
        ri = sim.reward_inputs()
        assert ri.now >= last_t and 0.0 <= ri.remaining_fraction <= ri.in_system + 1e-9
        last_t = ri.now
        done += ri.completed
        sim.apply(steps % 2 if steps % 5 else None)
        steps += 1
    done += sim.reward_inputs().completed
    assert done == 120 and len(sim.records) == 120
    assert sim.summary_dict()["n_requests"] == 120
    with pytest.raises(RuntimeError):
        sim.apply(0)


def test_heterogeneous_cluster_and_summary_fields():
    reqs = workload(300, seed=6, rate=12.0)
    cfg = SimConfig(profiles=("v100-llama2-7b", "h100-llama3-8b"))
    res = simulate(reqs, RoundRobin(2), cfg)
    for k in BENCH_FIELDS:
        assert k in res.summary
    e2e = {0: [], 1: []}
    for r in res.records:
        e2e[r.instance].append(r.e2e_s)
    assert len(e2e[0]) == len(e2e[1]) == 150
    assert sum(e2e[1]) < 0.5 * sum(e2e[0])  # the H100 serves the same share much faster
    s = res.summary
    assert s["e2e_p50"] <= s["e2e_p90"] <= s["e2e_p99"] and s["n_requests"] == 300
    assert s["simulated_seconds"] >= reqs[-1].arrival_s - reqs[0].arrival_s


def test_bad_config_and_bad_actions():
    with pytest.raises(PhaserError, match="unknown profile"):
        simulate([], RoundRobin(1), SimConfig(instances=1, profile="nope"))
    with pytest.raises(PhaserError, match="tick"):
        simulate([], RoundRobin(1), SimConfig(router_tick_s=0))
    with pytest.raises(PhaserError, match="instances"):
        SimConfig(instances=0)
    sim = ClusterSim(workload(2), SimConfig(instances=2))
    sim.next_decision()
    with pytest.raises(ValueError, match="instance 5"):
        sim.apply(5)


def test_write_records_jsonl_and_csv(tmp_path):
    res = simulate(workload(30, seed=7), RoundRobin(2), SimConfig(instances=2))
    j = write_records(res.records, tmp_path / "r.jsonl", policy="round-robin")
    rows = [orjson.loads(line) for line in j.read_bytes().splitlines()]
    assert len(rows) == 30 and rows[0]["policy"] == "round-robin"
    for key in ("request_id", "instance", "arrival_s", "first_token_s", "finish_s", "ttft_s", "tbt_mean_s",
                "tbt_p99_s", "e2e_s", "router_wait_s", "preemptions", "prompt_tokens", "output_tokens"):
        assert key in rows[0]
    c = write_records(res.records, tmp_path / "sub" / "r.csv")
    with c.open() as f:
        crow = list(csv.DictReader(f))
    assert len(crow) == 30 and float(crow[0]["e2e_s"]) == pytest.approx(rows[0]["e2e_s"])
    with pytest.raises(PhaserError, match=r"\.jsonl or \.csv"):
        write_records(res.records, tmp_path / "r.txt")


def test_duplicate_request_ids_are_a_user_error():
    reqs = [Request(id="same", arrival_s=0.0, prompt_tokens=5, output_tokens=5),
            Request(id="same", arrival_s=1.0, prompt_tokens=5, output_tokens=5)]
    with pytest.raises(PhaserError, match="duplicate request id 'same'"):
        simulate(reqs, RoundRobin(1), SimConfig(instances=1))


def test_config_names_the_cluster_that_runs():
    """instances, profile and profiles always agree (one source of truth: the profile list)."""
    a = SimConfig(instances=1, profile="a100-llama2-7b")
    assert (a.instances, a.profile, a.profiles) == (1, "a100-llama2-7b", ("a100-llama2-7b",))
    b = SimConfig(profiles=["a100-llama2-7b"] * 3)  # instances/profile defaults are overridden
    assert (b.instances, b.profile, b.profiles) == (3, "a100-llama2-7b", ("a100-llama2-7b",) * 3)
    m = SimConfig(profiles=("v100-llama2-7b", "h100-llama3-8b"))
    assert (m.instances, m.profile) == (2, None)


def test_a_request_no_instance_can_serve_is_rejected_and_the_run_goes_on():
    """Longer than Llama-2's 4,096-token context: a rejected record, like a live
    worker's rejected completion, never an exception that ends the run."""
    from protos import Request

    reqs = [Request(id="ok-0", arrival_s=0.0, prompt_tokens=50, output_tokens=10),
            Request(id="huge", arrival_s=0.1, prompt_tokens=4000, output_tokens=500),
            Request(id="ok-1", arrival_s=0.2, prompt_tokens=50, output_tokens=10)]
    sim = ClusterSim(reqs, SimConfig(instances=2, profile="v100-llama2-7b"))
    sim.run(RoundRobin(2))
    assert [r.id for r in sorted(sim.records, key=lambda r: r.id)] == ["ok-0", "ok-1"]
    assert [(rid, why[:20]) for rid, _, why in sim.rejected] == [("huge", "prompt + output = 45")]
    res = simulate(reqs, RoundRobin(2), SimConfig(instances=2, profile="v100-llama2-7b"))
    assert res.summary["rejected"] == 1 and res.summary["n_requests"] == 2
