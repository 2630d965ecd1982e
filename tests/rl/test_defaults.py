"""The shipped rl-* checkpoints serve every built-in scenario without --checkpoint."""

import dataclasses

import pytest

from phaser.bench.scenarios import SCENARIOS
from phaser.policies import make_policy
from phaser.rl.checkpoint import load_checkpoint
from phaser.policies.rl import VARIANTS, default_checkpoint
from phaser.bench.runner import sim_config
from phaser.predictor import CrossFitted
from phaser.rl.training import scenario_requests
from phaser.sim import simulate


@pytest.mark.parametrize("variant", VARIANTS)
def test_default_checkpoint_is_a_shared_network_of_its_variant(variant):
    ck = load_checkpoint(default_checkpoint(variant))
    assert ck.variant == variant and ck.arch == "shared"


@pytest.mark.parametrize("name", sorted({s.instances: s.name for s in SCENARIOS.values()}.values()))
@pytest.mark.parametrize("variant", VARIANTS)
def test_default_routes_a_short_run_of_every_scenario_size(variant, name):
    # one scenario per distinct instance count; 60 requests keep it fast, every one must complete
    sc = dataclasses.replace(SCENARIOS[name], n_requests=60)
    policy = make_policy(variant, sc.instances, 0)
    assert policy.n == sc.instances
    reqs = scenario_requests(sc, 0)
    res = simulate(reqs, policy, sim_config(sc), predictor=CrossFitted(reqs), seed=0)
    assert res.summary["n_requests"] == len(reqs) == len(res.records) == 60
    assert res.summary["decisions"] == 60 and res.summary["e2e_mean"] > 0.0


def test_shipped_azure_code_router_reproduces_its_held_out_win():
    """phaser/checkpoints/rl-guided-azure-code: re-evaluated from the shipped weights on the
    held-out test windows, it beats workload-aware there. Its metadata's per-window figures
    were measured with the engine it was trained on (roofline attention, before the A100
    profiles carried Vidur's measured attention); under today's engine the win holds
    (+1.86 ± 1.57 % vs +2.06 ± 1.65 % then), the exact figures do not, so they are
    compared only in direction, window by window."""
    from pathlib import Path

    from phaser.bench.scenarios import get_scenario
    from phaser.rl.training import evaluate
    from phaser.rl.windows import TraceWindows, paired_gain

    root = Path(__file__).resolve().parents[2] / "phaser" / "checkpoints" / "rl-guided-azure-code"
    ck = load_checkpoint(root)
    stats = ck.metadata["stats"]
    assert ck.variant == "rl-guided" and ck.metadata["workload"] == "azure-code"
    assert stats["warm_start"] == "predicted-lookahead"
    sc = get_scenario("azure-code")
    w = TraceWindows("azure-code", window_s=stats["windows"]["window_s"])
    test = w.seeds("test")
    rl = evaluate(sc, lambda s: make_policy("rl-guided", sc.instances, s, checkpoint=str(root)), test, None, w)
    wa = evaluate(sc, lambda s: make_policy("workload-aware", sc.instances, s), test, None, w)
    assert len(rl) == len(stats["test_e2e_per_window"]["rl-guided"])
    gain, half = paired_gain(rl, wa)
    assert gain - half > 0.0, f"held-out gain vs workload-aware {gain:+.2f} ± {half:.2f} %"
