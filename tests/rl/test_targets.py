"""Double-DQN and HuRL targets on hand-computed cases."""

import math

import jax.numpy as jnp
import pytest

from phaser.rl.config import DQNConfig
from phaser.rl.losses import double_dqn_target, hurl_target
from phaser.rl.hurl import guidance, hurl_lambda, regret


def test_double_dqn_picks_with_online_values_with_target():
    # online prefers action 2 in s'; the target net values action 2 at 5.0
    # (its own max, 9.0 at action 0, must NOT be used).
    q_on = jnp.array([[1.0, 0.0, 3.0]])
    q_tg = jnp.array([[9.0, 1.0, 5.0]])
    y = double_dqn_target(jnp.array([2.0]), jnp.array([0.0]), 0.9, q_on, q_tg)
    assert float(y[0]) == pytest.approx(2.0 + 0.9 * 5.0)


def test_terminal_transition_has_no_bootstrap():
    q = jnp.array([[100.0, -100.0]])
    y = double_dqn_target(jnp.array([-1.5]), jnp.array([1.0]), 0.99, q, q)
    assert float(y[0]) == pytest.approx(-1.5)
    # nor heuristic
    y = hurl_target(jnp.array([-1.5]), jnp.array([1.0]), 0.99, 0.3, jnp.array([-7.0]), q, q)
    assert float(y[0]) == pytest.approx(-1.5)


def test_hurl_blend_hand_computed():
    # r=1, γ=0.5, λ=0.25, h=-4, bootstrap Q_t(s', argmax Q_on)=8 (argmax is action 1)
    q_on = jnp.array([[0.0, 2.0]])
    q_tg = jnp.array([[100.0, 8.0]])
    y = hurl_target(jnp.array([1.0]), jnp.array([0.0]), 0.5, 0.25, jnp.array([-4.0]), q_on, q_tg)
    # r + (1-λ)γh + λγV = 1 + 0.75*0.5*(-4) + 0.25*0.5*8 = 1 - 1.5 + 1 = 0.5
    assert float(y[0]) == pytest.approx(0.5)
    # λ=0: purely the heuristic one-step target; λ=1: the Double-DQN target
    y0 = hurl_target(jnp.array([1.0]), jnp.array([0.0]), 0.5, 0.0, jnp.array([-4.0]), q_on, q_tg)
    y1 = hurl_target(jnp.array([1.0]), jnp.array([0.0]), 0.5, 1.0, jnp.array([-4.0]), q_on, q_tg)
    assert float(y0[0]) == pytest.approx(1.0 - 2.0)
    assert float(y1[0]) == pytest.approx(float(double_dqn_target(jnp.array([1.0]), jnp.array([0.0]), 0.5, q_on, q_tg)[0]))


def test_lambda_schedule_decays_heuristic_weight_as_exp_minus_half_k():
    for k in range(8):
        assert 1.0 - hurl_lambda(k) == pytest.approx(math.exp(-0.5 * k))
    assert hurl_lambda(0) == 0.0
    with pytest.raises(ValueError):
        hurl_lambda(-1)
    # only rl-guided is reshaped
    assert DQNConfig(variant="rl-baseline").lam(0) == 1.0
    assert DQNConfig(variant="rl-aware").lam(3) == 1.0
    assert DQNConfig(variant="rl-guided").lam(2) == pytest.approx(1 - math.exp(-1.0))


def test_guidance_is_regret_against_min_impact_instance():
    pens = [0.5, 0.2, 0.9]
    assert regret(pens, 1) == 0.0
    assert regret(pens, 2) == pytest.approx(0.7)
    assert guidance(pens, 0, scale=2.0) == pytest.approx(-0.6)
    # WAIT (action == n) is charged the mean regret
    assert regret(pens, 3) == pytest.approx((0.3 + 0.0 + 0.7) / 3)


def test_epsilon_schedule_stops_exploring_after_eps_episodes():
    cfg = DQNConfig(eps_start=1.0, eps_end=0.0, eps_episodes=20)
    assert cfg.epsilon(0) == 1.0
    assert cfg.epsilon(10) == pytest.approx(0.5)
    assert cfg.epsilon(20) == 0.0 and cfg.epsilon(50) == 0.0


def test_config_round_trips_and_rejects_unknown_variant():
    cfg = DQNConfig(variant="rl-aware", hidden=(32, 16))
    assert DQNConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        DQNConfig(variant="rl-magic")
