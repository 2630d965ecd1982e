"""A short training run on a tiny scenario measurably beats its untrained start,
and writes a loadable checkpoint and learning curves."""

import csv

import numpy as np

from phaser.bench.scenarios import Scenario
from phaser.policies import make_policy
from phaser.rl.dqn import DQNConfig
from phaser.rl.features import FeatureSpec
from phaser.rl.policy import RLPolicy
from phaser.rl.training import evaluate, train_scenario

# 2 V100 instances at 9 req/s: contended enough that placement matters
# (paper-v100 runs 5 req/s per instance; this is nearly twice that), small
# enough for a CPU test: 150 requests per episode.
TINY = Scenario("tiny", "paper-mix", 2, "v100-llama2-7b", 9.0, 150)
CFG = DQNConfig(variant="rl-guided", hidden=(32, 32), batch_size=64, learning_starts=256, train_every=1,
                target_update_every=100, eps_episodes=4, n_envs=2, learning_rate=1e-3)


def test_short_training_improves_over_untrained_start(tmp_path):
    seeds = [100, 101]
    spec = FeatureSpec(TINY.instances)
    rep = train_scenario(TINY, CFG, episodes=12, seed=0, out=tmp_path / "ck", eval_every=4, eval_seeds=2,
                         baselines=["round-robin"])
    ck_params = rep.rows and __import__("phaser.rl.checkpoint", fromlist=["x"]).load_checkpoint(rep.checkpoint).params
    # the untrained start: the same seeded initialisation, before any update
    import jax

    from phaser.rl import network

    init = network.flatten(network.init_params(network.build(CFG.arch, 2, CFG.hidden), 2, jax.random.PRNGKey(0)))
    untrained = np.mean(evaluate(TINY, lambda s: RLPolicy(init, CFG.arch, 2, spec, seed=s), seeds))
    trained = np.mean(evaluate(TINY, lambda s: RLPolicy(ck_params, CFG.arch, 2, spec, seed=s), seeds))
    rr = np.mean(evaluate(TINY, lambda s: make_policy("round-robin", 2, s), seeds))
    assert trained < 0.9 * untrained, (trained, untrained)
    assert trained < 1.05 * rr, (trained, rr)
    rows = list(csv.DictReader(open(tmp_path / "ck" / "curves.csv")))
    assert len(rows) == 12 and (tmp_path / "ck" / "curves.png").stat().st_size > 1000
    assert sum(1 for r in rows if r["eval_e2e_mean"]) == 3
