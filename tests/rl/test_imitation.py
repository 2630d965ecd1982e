"""The imitation warm start (DQfD pre-training on heuristic demonstrations)."""

import jax.numpy as jnp
import numpy as np
import pytest

from phaser.bench.scenarios import Scenario
from phaser.policies import make_policy
from phaser.rl import network
from phaser.rl.dqn import DQNConfig
from phaser.rl.env import RouterEnv
from phaser.rl.imitation import collect, margin_loss, pretrain
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
