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
