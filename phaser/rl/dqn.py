"""Double DQN with optional HuRL guidance — read top to bottom (CleanRL-style).

1. ``DQNConfig``: every hyperparameter in one frozen dataclass; it is saved in
   each checkpoint. Paper values where the paper gives them (Jain et al. 2025):
   hidden 64-64, ReLU, batch 512, exploration stopped after episode 20,
   completion bonus 60, HuRL decay 0.5 per episode. Not given by the paper, our
   choices: γ = 0.99 (a decision every ~0.05 s at 20 req/s → a ~5 s horizon, the
   order of an E2E latency), Adam lr 5e-4 with global-norm clipping at 10
   (CleanRL/DQN-Zoo practice), replay 100k transitions (~50 episodes of 2,000
   decisions), target sync every 250 updates, one update per 4 decisions.
   Time, not decisions, is discounted: a step lasting Δt is discounted by
   γ^(Δt/tick) with γ = 0.995 per 0.02 s router tick (a ~4 s horizon, the order
   of a mean E2E latency). Decisions come at arrivals and at ticks while the
   head waits, so per-decision discounting would make a short WAIT step look
   cheaper than a routing step that lasts until the next arrival — a bias we
   measured (the agent learnt to wait on every request) — while the
   semi-MDP discount makes the return the time integral the reward describes.
   Two defaults that depart from a literal reading of the paper, both
   decided by measurement on paper-v100: ``allow_wait = False`` — with WAIT
   available the agent learnt to wait on most decisions (5,000+ WAITs per
   2,000-request episode, held-out E2E 7.8–8.5 s vs round robin's 7.1 s): a
   WAIT's cost (one tick of delay for the queue) is far below the return's
   noise, so it is never learnt; ``hurl_scale = 10`` — at 1 the heuristic's
   regret (median 0.025 in reward units) sat below the per-step reward noise
   (~0.3) and even pure guidance (λ = 0) chose like random (25% agreement with
   the heuristic over 4 instances); at 10 the guided greedy policy matches
   round robin. Both are config fields (``phaser train --set allow_wait=true``).
   Off by default, used by the shipped rl-guided: ``warm_start`` (a heuristic
   to imitate first, ``phaser.rl.imitation`` — DQfD pre-training; its
   ``demo_episodes``, ``pretrain_updates``, ``pretrain_learning_rate``,
   ``margin``, ``margin_weight``, ``finetune_margin``) and ``lam_max`` (a cap
   on HuRL's λ, so some heuristic weight stays in the target).
2. ``hurl_target``: the bootstrap target. Double DQN (van Hasselt et al. 2016)
   picks a' with the online net and values it with the target net; HuRL
   (``phaser.rl.hurl``) blends a heuristic h(s') in with weight 1 − λ. With
   λ = 1 it *is* the Double-DQN target (``double_dqn_target``).
3. ``make_update``: one jitted gradient step (Huber loss, optax adam after
   clip_by_global_norm).
4. ``train``: the loop. The simulator is event-driven Python, so an episode
   cannot be jitted/vmapped gymnax-style; instead several environments run in
   lock-step and their action selection is one batched forward pass, and all
   learner work (target, loss, gradient, optimiser) is one jitted call on a
   512-transition batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol

import jax
import numpy as np

from phaser.rl import network
from phaser.rl.config import DQNConfig
from phaser.rl.losses import make_dqfd_update, make_optimizer, make_update
from phaser.rl.replay import ReplayBuffer


# --- 4. the training loop -----------------------------------------------------

class Env(Protocol):
    """What ``train`` needs from an environment (``phaser.rl.env.RouterEnv``)."""

    n_actions: int
    obs_dim: int

    def reset(self, seed: int) -> np.ndarray: ...

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict]: ...

    def action_mask(self) -> np.ndarray: ...


@dataclass
class EpisodeStats:
    episode: int
    seed: int
    ret: float
    steps: int
    epsilon: float
    lam: float
    info: dict = field(default_factory=dict)


@dataclass
class TrainResult:
    params: dict[str, np.ndarray]
    episodes: list[EpisodeStats]
    updates: int
    steps: int
    losses: list[float]


def train(make_env: Callable[[], Env], cfg: DQNConfig, episodes: int, seed: int,
          episode_seed: Callable[[int], int] = lambda k: k,
          on_episode: Callable[[EpisodeStats, dict], None] | None = None,
          init_params: dict[str, np.ndarray] | None = None, replay: ReplayBuffer | None = None,
          demos: ReplayBuffer | None = None) -> TrainResult:
    """Train for ``episodes`` episodes; episode k runs the workload seed ``episode_seed(k)``.

    ``on_episode(stats, params)`` is called after every finished episode with the
    current online parameters (flat numpy), e.g. for evaluation or progress.
    ``init_params`` / ``replay`` start from given weights and a pre-filled buffer
    (the imitation warm start, ``phaser.rl.imitation``); ``demos`` adds DQfD's
    large-margin loss on those demonstrations to every update.
    """
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)

    n_envs = max(1, min(cfg.n_envs, episodes))
    envs = [make_env() for _ in range(n_envs)]
    n_actions, obs_dim = envs[0].n_actions, envs[0].obs_dim
    n_instances = n_actions - 1

    q_net = network.build(cfg.arch, n_instances, cfg.hidden)
    params = (network.init_params(q_net, n_instances, key, obs_dim) if init_params is None
              else network.unflatten(init_params))
    target_params = params
    tx = make_optimizer(cfg)
    opt_state = tx.init(params)
    update = make_update(q_net, cfg, tx)
    if demos is not None:
        dqfd = make_dqfd_update(q_net, cfg, tx, n_actions if cfg.allow_wait else n_actions - 1)
    q_values = jax.jit(lambda p, x: q_net.apply({"params": p}, x))
    rb = ReplayBuffer(cfg.buffer_size, obs_dim) if replay is None else replay

    # episode bookkeeping per env slot
    started = 0
    finished = 0
    ep_of = [-1] * n_envs
    ep_ret = [0.0] * n_envs
    ep_steps = [0] * n_envs
    obs = np.zeros((n_envs, obs_dim), np.float32)
    active = np.zeros(n_envs, bool)
    for j, env in enumerate(envs):
        obs[j] = env.reset(episode_seed(started))
        ep_of[j], active[j] = started, True
        started += 1

    steps = updates = 0
    losses: list[float] = []
    stats: list[EpisodeStats] = []
    while active.any():
        # ε-greedy, one batched forward pass for every env in lock-step
        eps = cfg.epsilon(finished)
        # (WAIT is masked where the env's starvation guard forbids it)
        mask = np.stack([env.action_mask() for env in envs])
        greedy = np.where(mask, np.asarray(q_values(params, obs)), -np.inf).argmax(axis=1)
        explore = rng.random(n_envs) < eps
        random_a = rng.integers(0, n_actions, n_envs)
        random_a = np.where(mask[np.arange(n_envs), random_a], random_a, rng.integers(0, n_actions - 1, n_envs))
        actions = np.where(explore, random_a, greedy)

        for j in np.flatnonzero(active):
            next_obs, reward, done, info = envs[j].step(int(actions[j]))
            rb.add(obs[j], int(actions[j]), reward, next_obs, done, info.get("h", 0.0), info.get("ticks", 1.0))
            ep_ret[j] += reward
            ep_steps[j] += 1
            steps += 1
            obs[j] = next_obs

            # learn: one jitted update per train_every decisions once the buffer is warm
            if rb.size >= cfg.learning_starts and steps % cfg.train_every == 0:
                b = rb.sample(rng, cfg.batch_size)
                args = (params, target_params, opt_state, b.obs, b.action, b.reward, b.next_obs, b.done, b.h,
                        cfg.lam(finished), b.ticks)
                if demos is None:
                    params, opt_state, loss, _ = update(*args)
                else:
                    d = demos.sample(rng, cfg.batch_size // 4)
                    params, opt_state, loss, _ = dqfd(*args, d.obs, d.action)
                updates += 1
                if updates % cfg.target_update_every == 0:
                    target_params = params
                if updates % 50 == 0:
                    losses.append(float(loss))

            if not done:
                continue
            st = EpisodeStats(ep_of[j], episode_seed(ep_of[j]), ep_ret[j], ep_steps[j], eps, cfg.lam(finished),
                              dict(info.get("episode", {})))
            finished += 1
            stats.append(st)
            if on_episode is not None:
                on_episode(st, network.flatten(params))
            ep_ret[j], ep_steps[j] = 0.0, 0
            if started < episodes:
                obs[j] = envs[j].reset(episode_seed(started))
                ep_of[j] = started
                started += 1
            else:
                active[j] = False

    return TrainResult(network.flatten(params), stats, updates, steps, losses)
