import math

import pytest

from phaser.bench.capacity import find_capacity
from phaser.bench.runner import aggregate, is_learned, resolve_policies
from phaser.bench.scenarios import SCENARIOS, get_scenario
from phaser.bench.stats import mean_ci
from phaser.errors import PhaserError


def curve(knee):
    """Synthetic latency curve: SLO met below ``knee`` req/s."""
    calls = []

    def run(rate):
        calls.append(rate)
        return {"ttft_p99": 0.5 if rate <= knee else 10.0, "tbt_p99": 0.05}

    return run, calls


@pytest.mark.parametrize("start,knee", [(20.0, 33.0), (20.0, 7.5), (1.0, 100.0)])
def test_capacity_bisection_converges_to_the_knee(start, knee):
    run, calls = curve(knee)
    res = find_capacity(run, start, iterations=8)
    assert res.capacity_rps <= knee
    lo, hi = res.bracket
    assert lo == res.capacity_rps and hi > knee >= lo
    assert (hi - lo) / knee < 0.05
    assert all(ok == (r <= knee) for r, ok, *_ in res.probes)


def test_capacity_zero_when_slo_never_met():
    res = find_capacity(lambda r: {"ttft_p99": 99.0, "tbt_p99": 1.0}, 10.0)
    assert res.capacity_rps == 0.0


def test_mean_ci_uses_student_t():
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.3027 * 1.0 / math.sqrt(3), rel=1e-4)  # t(0.975, 2) = 4.3027
    assert mean_ci([5.0]) == (5.0, 0.0)


def test_aggregate_improvement_over_round_robin():
    def row(pol, seed, e2e):
        r = {k: 1.0 for k in ("e2e_p50", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p50", "ttft_p90", "ttft_p99",
                              "tbt_mean", "tbt_p99", "router_wait_mean", "preemptions")}
        r.update(scenario="s", workload="w", instances=4, profile="p", rate=20.0, policy=pol, seed=seed,
                 e2e_mean=e2e, n_requests=10, wall_seconds=0.1, simulated_seconds=5.0)
        return r

    agg = {a["policy"]: a for a in aggregate([row("round-robin", 0, 10.0), row("round-robin", 1, 12.0),
                                              row("least-tokens", 0, 9.0), row("least-tokens", 1, 9.9)])}
    assert agg["round-robin"]["improvement_vs_rr_pct"] == 0.0
    assert agg["least-tokens"]["improvement_vs_rr_pct"] == pytest.approx(100 * (11.0 - 9.45) / 11.0)
    assert agg["least-tokens"]["repeats"] == 2 and agg["least-tokens"]["e2e_mean_ci95"] > 0


def test_policy_resolution_and_scenarios():
    pols = resolve_policies("all")
    assert pols[0] == "round-robin" and "workload-aware" in pols and not any(is_learned(p) for p in pols)
    with pytest.raises(PhaserError, match="unknown policy"):
        resolve_policies("nope")
    assert set(SCENARIOS) == {"paper-v100", "paper-a100", "paper-a100-chunked", "paper-8x", "azure-conv", "azure-code",
                              "prefix-heavy", "paper-v100-16gb", "paper-a10g"}
    s = get_scenario("paper-a100-chunked")
    assert (s.instances, s.profile, s.rate, s.n_requests, s.chunked_prefill, s.max_num_batched_tokens, s.scheduler) == \
        (4, "a100-llama3-8b", 80.0, 2000, True, 1024, "vllm-v1")
    # the paper's setups without chunked prefill run vLLM V0's prefill-first scheduler
    assert {get_scenario(n).scheduler for n in ("paper-v100", "paper-a100", "paper-8x", "paper-v100-16gb")} == {"vllm-v0"}
    with pytest.raises(PhaserError, match="unknown scenario"):
        get_scenario("nope")


def test_capacity_probes_cover_a_fixed_horizon():
    from phaser.bench.capacity import MIN_PROBE_REQUESTS, probe_requests

    assert probe_requests(470.0, 25.0) == 11750  # not the scenario's 2,000: a 4 s burst hides overload
    assert probe_requests(80.0, 25.0) == 2000
    assert probe_requests(2.0, 100.0) == MIN_PROBE_REQUESTS  # p99 needs enough requests
    assert probe_requests(2.0, 100.0, min_requests=10) == 200


def test_paired_gain_and_markdown_table():
    """The gain over round robin is paired per seed (same requests), with its CI, and the
    markdown table shows it per policy."""
    from phaser.bench.report import bench_markdown
    from phaser.bench.runner import aggregate

    def row(policy, seed, e2e):
        return {"scenario": "s", "workload": "w", "instances": 2, "profile": "p", "rate": 1.0, "policy": policy,
                "seed": seed, "n_requests": 10, "wall_seconds": 0.1, "simulated_seconds": 1.0,
                **{m: e2e for m in ("e2e_mean", "e2e_p50", "e2e_p90", "e2e_p99", "ttft_mean", "ttft_p50", "ttft_p90",
                                    "ttft_p99", "tbt_mean", "tbt_p99", "router_wait_mean", "preemptions", "rejected")}}

    # seed 1 is a hard draw for everyone: unpaired, B's mean hides that it wins on both seeds
    rows = [row("round-robin", 0, 1.0), row("round-robin", 1, 10.0), row("b", 0, 0.9), row("b", 1, 9.0)]
    agg = {a["policy"]: a for a in aggregate(rows)}
    assert agg["b"]["gain_vs_rr_pct"] == pytest.approx(10.0) and agg["b"]["gain_vs_rr_ci95"] == pytest.approx(0.0)
    md = bench_markdown(list(agg.values()))
    assert "| b | 4.950 ± " in md and "+10.00% ± 0.00 |" in md
    assert md.index("| b |") < md.index("| round-robin |")  # best first
