"""The learner's losses and jitted updates, read top to bottom:

1. ``hurl_target``: the bootstrap target. Double DQN (van Hasselt et al. 2016)
   picks a' with the online net and values it with the target net; HuRL
   (``phaser.rl.hurl``) blends a heuristic h(s') in with weight 1 − λ. With
   λ = 1 it *is* the Double-DQN target (``double_dqn_target``).
2. ``make_update``: one jitted TD step (Huber loss, optax adam after
   clip_by_global_norm) — what ``phaser.rl.dqn.train`` and the online
   trainer (``policy_trainer.learner``) run.
3. DQfD (``phaser.rl.imitation`` explains it): ``margin_loss`` (J_E),
   ``make_pretrain_update`` (TD + J_E on demonstrations only) and
   ``make_dqfd_update`` (fine-tuning: TD on the agent's batch + J_E on a
   demonstration batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from phaser.rl.config import DQNConfig


# --- 1. targets ---------------------------------------------------------------

def hurl_target(reward, done, gamma, lam, h, q_next_online, q_next_target):
    """y = r + γ(1−d)·[(1−λ)·h(s') + λ·Q_target(s', argmax_a Q_online(s', a))].

    ``gamma`` may be per transition (γ^ticks for a semi-MDP step)."""
    a_star = jnp.argmax(q_next_online, axis=-1)
    v_next = jnp.take_along_axis(q_next_target, a_star[..., None], axis=-1)[..., 0]
    return reward + gamma * (1.0 - done) * ((1.0 - lam) * h + lam * v_next)


def double_dqn_target(reward, done, gamma, q_next_online, q_next_target):
    """The plain Double-DQN target: HuRL with λ = 1."""
    return hurl_target(reward, done, gamma, 1.0, 0.0, q_next_online, q_next_target)


# --- 2. the jitted TD update -----------------------------------------------------

def make_optimizer(cfg: DQNConfig, learning_rate: float | None = None) -> optax.GradientTransformation:
    lr = cfg.learning_rate if learning_rate is None else learning_rate
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), optax.adam(lr))


def make_update(q_net, cfg: DQNConfig, tx: optax.GradientTransformation):
    def update(params, target_params, opt_state, obs, action, reward, next_obs, done, h, lam, ticks=None):
        """One step; ``ticks`` (per transition duration in router ticks) → discount γ^ticks, None → γ."""
        q_next_online = q_net.apply({"params": params}, next_obs)
        q_next_target = q_net.apply({"params": target_params}, next_obs)
        discount = cfg.gamma if ticks is None else cfg.gamma ** ticks
        y = jax.lax.stop_gradient(hurl_target(reward, done, discount, lam, h, q_next_online, q_next_target))

        def loss_fn(p):
            q = q_net.apply({"params": p}, obs)
            q_sa = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
            return optax.huber_loss(q_sa, y, delta=cfg.huber_delta).mean(), q_sa.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, q_mean

    return jax.jit(update)


# --- 3. DQfD: imitation losses --------------------------------------------------

def margin_loss(q, expert_action, margin: float, n_choices: int):
    """DQfD's J_E: mean over the batch of max_a[Q(s,a) + m·1(a≠a_E)] − Q(s,a_E), a < n_choices."""
    q = q[..., :n_choices]
    m = margin * (1.0 - jax.nn.one_hot(expert_action, n_choices))
    q_e = jnp.take_along_axis(q, expert_action[:, None], axis=-1)[:, 0]
    return ((q + m).max(axis=-1) - q_e).mean()


def make_pretrain_update(q_net, cfg: DQNConfig, tx, n_choices: int):
    def update(params, target_params, opt_state, obs, action, reward, next_obs, done, ticks):
        q_next_online = q_net.apply({"params": params}, next_obs)[..., :n_choices]
        q_next_target = q_net.apply({"params": target_params}, next_obs)[..., :n_choices]
        y = jax.lax.stop_gradient(hurl_target(reward, done, cfg.gamma ** ticks, 1.0, 0.0, q_next_online, q_next_target))

        def loss_fn(p):
            q = q_net.apply({"params": p}, obs)
            q_sa = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
            td = optax.huber_loss(q_sa, y, delta=cfg.huber_delta).mean()
            je = margin_loss(q, action, cfg.margin, n_choices)
            return td + cfg.margin_weight * je, (td, je, (q[..., :n_choices].argmax(-1) == action).mean())

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    return jax.jit(update)


def make_dqfd_update(q_net, cfg: DQNConfig, tx, n_choices: int):
    """The fine-tuning step: ``make_update``'s TD loss (HuRL target) + λ_E · J_E on a demonstration batch."""
    def update(params, target_params, opt_state, obs, action, reward, next_obs, done, h, lam, ticks,
               demo_obs, demo_action):
        q_next_online = q_net.apply({"params": params}, next_obs)
        q_next_target = q_net.apply({"params": target_params}, next_obs)
        y = jax.lax.stop_gradient(hurl_target(reward, done, cfg.gamma ** ticks, lam, h, q_next_online, q_next_target))

        def loss_fn(p):
            q = q_net.apply({"params": p}, obs)
            q_sa = jnp.take_along_axis(q, action[:, None], axis=-1)[:, 0]
            td = optax.huber_loss(q_sa, y, delta=cfg.huber_delta).mean()
            je = margin_loss(q_net.apply({"params": p}, demo_obs), demo_action, cfg.margin, n_choices)
            return td + cfg.margin_weight * je, q_sa.mean()

        (loss, q_mean), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, q_mean

    return jax.jit(update)
