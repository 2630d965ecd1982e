"""A short training run on a tiny scenario measurably beats its untrained start,
and writes a loadable checkpoint and learning curves."""

import csv

import jax
import numpy as np

from phaser.bench.scenarios import Scenario
from phaser.policies import make_policy
from phaser.rl import network
from phaser.rl.checkpoint import load_checkpoint
from phaser.rl.dqn import DQNConfig
from phaser.rl.features import FeatureSpec
from phaser.rl.policy import RLPolicy
from phaser.rl.training import evaluate, train_scenario

# 4 V100 instances at 20 req/s (paper-v100's load) for 10 s: 200 requests per
# episode keeps the test in seconds; learning sizes scaled down accordingly.
TINY = Scenario("tiny", "paper-mix", 4, "v100-llama2-7b", 20.0, 200)
CFG = DQNConfig(variant="rl-guided", hidden=(32, 32), batch_size=64, learning_starts=256, train_every=1,
                target_update_every=100, eps_episodes=4, n_envs=2, learning_rate=1e-3, hurl_decay=0.25)
SEEDS = [100, 101]


def test_short_training_improves_over_untrained_start(tmp_path):
    spec = FeatureSpec(TINY.instances)
    rep = train_scenario(TINY, CFG, episodes=10, seed=0, out=tmp_path / "ck", eval_every=5, eval_seeds=2,
                         baselines=["round-robin"])
    trained_params = load_checkpoint(rep.checkpoint).params
    # the untrained start: the same seeded initialisation, before any update
    net = network.build(CFG.arch, TINY.instances, CFG.hidden)
    init = network.flatten(network.init_params(net, TINY.instances, jax.random.PRNGKey(0)))

    def e2e(params):
        return float(np.mean(evaluate(TINY, lambda s: RLPolicy(params, CFG.arch, 2, spec, seed=s,
                                                               allow_wait=False), SEEDS)))

    untrained, trained = e2e(init), e2e(trained_params)
    rr = float(np.mean(evaluate(TINY, lambda s: make_policy("round-robin", TINY.instances, s), SEEDS)))
    print(f"untrained {untrained:.3f}s trained {trained:.3f}s round-robin {rr:.3f}s")
    assert trained < 0.9 * untrained, (trained, untrained)
    rows = list(csv.DictReader(open(tmp_path / "ck" / "curves.csv")))
    assert len(rows) == 10 and (tmp_path / "ck" / "curves.png").stat().st_size > 1000
    assert sum(1 for r in rows if r["eval_e2e_mean"]) == 2
