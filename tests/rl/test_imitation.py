"""The imitation warm start (DQfD pre-training on heuristic demonstrations)."""

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.bench.scenarios import Scenario
from phaser.policies import make_policy
from phaser.rl import network
from phaser.rl.dqn import DQNConfig
from phaser.rl.env import RouterEnv
from phaser.rl.imitation import collect, pretrain
from phaser.rl.losses import margin_loss
from phaser.rl.training import make_sim_factory

TINY = Scenario("tiny", "paper-mix", 4, "v100-llama2-7b", 20.0, 200)


def test_margin_loss_hand_computed():
    q = jnp.array([[1.0, 3.0, 2.0, 9.0], [5.0, 0.0, 0.0, 9.0]])
    a_e = jnp.array([2, 0])
    # row 0: max(1+.8, 3+.8, 2) − 2 = 1.8; row 1: max(5, .8, .8) − 5 = 0 (expert wins by more than the margin);
    # the 4th column (WAIT, 9.0) is outside n_choices = 3 and must be ignored
    assert float(margin_loss(q, a_e, 0.8, 3)) == pytest.approx((1.8 + 0.0) / 2)


def test_lambda_cap_keeps_heuristic_weight():
    cfg = DQNConfig(variant="rl-guided", lam_max=0.9)
    assert cfg.lam(0) == 0.0 and cfg.lam(100) == pytest.approx(0.9)
    assert DQNConfig(variant="rl-aware", lam_max=0.9).lam(0) == 1.0


def test_demonstrations_are_the_heuristics_choices_and_pretraining_learns_them():
    cfg = DQNConfig(arch="shared", hidden=(32, 32), batch_size=128, pretrain_updates=300, target_update_every=100,
                    learning_rate=1e-3)
    make_sim = make_sim_factory(TINY)
    rb, e2e = collect(lambda: RouterEnv.from_config(make_sim, 4, cfg), "workload-aware", [7], 1000)
    assert rb.size == TINY.n_requests  # one decision per request (WAIT is masked)
    # the buffer's actions replay the heuristic's own run: same mean E2E as simulating it directly
    from phaser.rl.training import evaluate

    assert e2e[0] == pytest.approx(evaluate(TINY, lambda s: make_policy("workload-aware", 4, s), [7])[0])

    params, fit = pretrain(rb, 4, cfg, seed=0)
    obs, act = rb.obs[:rb.size], rb.action[:rb.size]

    def agreement(p):
        return float((network.forward_np(p, obs, "shared", 4, 2)[:, :4].argmax(1) == act).mean())

    net = network.build("shared", 4, cfg.hidden)
    import jax

    init = network.flatten(network.init_params(net, 4, jax.random.PRNGKey(0)))
    before, after = agreement(init), agreement(params)
    print(f"agreement with workload-aware: untrained {before:.2f}, pre-trained {after:.2f}")
    assert after > before + 0.15 and after > 0.5
    assert np.isfinite(fit["td_loss"]) and 0.0 <= fit["agreement"] <= 1.0


def test_warm_started_training_run_keeps_the_warm_start_as_a_candidate(tmp_path):
    from phaser.rl.checkpoint import load_checkpoint
    from phaser.rl.training import train_scenario

    cfg = DQNConfig(arch="shared", hidden=(16, 16), batch_size=64, learning_starts=64, train_every=2, n_envs=1,
                    warm_start="workload-aware", demo_episodes=2, pretrain_updates=100, eps_start=0.05, lam_max=0.9)
    rep = train_scenario(TINY, cfg, episodes=2, seed=0, out=tmp_path / "ck", eval_every=1, eval_seeds=1,
                         baselines=["round-robin"])
    warm = rep.rows[0]
    assert warm["episode"] == -1 and warm["eval_e2e_mean"] == rep.extras["warm_start_eval_e2e_mean"]
    assert rep.best_eval_e2e == min(r["eval_e2e_mean"] for r in rep.rows)
    assert rep.extras["demo_transitions"] == 2 * TINY.n_requests
    stats = load_checkpoint(rep.checkpoint).metadata["stats"]
    assert stats["warm_start"] == "workload-aware" and stats["demo_seeds"] == [20_000, 20_001]
    assert (tmp_path / "ck" / "curves.png").stat().st_size > 1000


def test_lookahead_teacher_is_the_benchmarks_lookahead():
    """warm_start=lookahead demonstrates exactly what ``phaser bench headroom`` runs."""
    from phaser.bench.headroom import lookahead
    from phaser.bench.runner import load_requests, sim_config
    from phaser.predictor import CrossFitted

    sc = Scenario("tiny3", "paper-mix", 3, "v100-llama2-7b", 12.0, 60)
    cfg = DQNConfig(arch="shared")
    rb, e2e = collect(lambda: RouterEnv.from_config(make_sim_factory(sc), 3, cfg), "lookahead:least-requests", [5],
                      1000, lookahead_horizon_s=4.0)
    reqs = load_requests(sc, 5)
    ref = lookahead(reqs, sim_config(sc), lambda: make_policy("least-requests", 3, 5), predictor=CrossFitted(reqs),
                    seed=5, horizon_s=4.0)
    assert rb.size == 60 and e2e[0] == pytest.approx(ref.e2e_mean, abs=1e-12)
    from phaser.rl.config import parse_teacher

    assert parse_teacher("lookahead") == ("workload-aware", True)
    assert parse_teacher("predicted-lookahead:min-min") == ("min-min", False)
    assert parse_teacher("min-min") == ("min-min", None)
