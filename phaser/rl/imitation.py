"""Warm start by imitation: demonstrations of a heuristic, then DQfD-style pre-training.

Why: on ``paper-v100`` plain Double DQN (and HuRL with λ → 1) starts at round
robin's level and drifts away from it (``phaser/checkpoints/*/curves.png`` of
the first shipped runs: held-out mean E2E 7.27 s at episode 2, 72 s at episode
14), while the workload-aware heuristic is the strongest policy of
``phaser bench``. A learner that starts *from* the heuristic and only keeps
what the held-out evaluation confirms can at worst serve the heuristic's
choices; fine-tuning is then the honest attempt to beat it.

Method — Deep Q-learning from Demonstrations (Hester et al., AAAI 2018,
"DQfD"), reduced to its pre-training phase:

1. ``collect``: run the heuristic (``phaser.policies.make_policy(name)``)
   through ``RouterEnv`` for a few training-seed episodes and store every
   transition (obs, heuristic action, reward, next obs, done, h, ticks) in a
   ``ReplayBuffer`` — the same transitions DQN would store, so the buffer can
   seed the fine-tuning replay as DQfD does.
2. ``pretrain``: minimise on that buffer
   ``J = J_TD + λ_E · J_E`` where J_TD is the Double-DQN Huber loss of
   ``phaser.rl.dqn`` (so the Q-values keep the return's scale, which the later
   TD fine-tuning needs) and J_E the large-margin loss
   ``max_a [Q(s, a) + m·1(a ≠ a_E)] − Q(s, a_E)`` that makes the expert's
   action the argmax by a margin m. DQfD's values: λ_E = 1, m = 0.8 (their Q
   scale is that of clipped Atari rewards; ours is of the same order, O(1–10),
   because of ``reward_scale``). The target network is synced every
   ``target_update_every`` updates as in fine-tuning.

3. fine-tuning (``phaser.rl.dqn.train`` with ``demos=``): DQfD keeps J_E on
   demonstration data while it learns from its own experience, so TD updates
   can move the policy away from the expert only where their evidence beats
   the margin: each update is the HuRL/Double-DQN loss on an agent batch plus
   λ_E · J_E on a demonstration batch of ``batch_size // 4`` (DQfD samples
   demonstrations from the same prioritized buffer; a fixed share is our
   simplification, ¼ ≈ the demonstration share of DQfD's Atari buffer early
   in its fine-tuning).

Measured on paper-v100 (``phaser/checkpoints/README.md``): 16 demonstration
episodes and 5,000 updates reach 72 % agreement with workload-aware (the
shared network sees the router's features, not every input of the
heuristic's penalty); the warm start's held-out mean E2E was 7.140 s vs the
heuristic's 7.118 s and round robin's 7.250 s. Without the margin in
fine-tuning, TD updates pulled it to 7.16–7.18 s within a few episodes; with
it, fine-tuning stayed within 7.116–7.148 s (best 7.1165 s): a tie with the
heuristic, not a win.

Teacher: ``warm_start`` names a heuristic, ``lookahead[:<heuristic>]`` — the
clairvoyant one-step lookahead over that heuristic (``phaser.sim.lookahead``),
which forks the simulator at every decision and reads the future to choose —
or ``predicted-lookahead[:<heuristic>]``, the same lookahead blindfolded to
what a router knows. On azure-code both beat workload-aware (``phaser bench
headroom``), so unlike a heuristic teacher they leave the student something
to gain over the heuristic; the network sees only the router's features and
learns what of the teacher's choices they predict. Students of the
clairvoyant teacher tied workload-aware on held-out windows, students of the
blindfolded one beat it (``phaser/checkpoints/README.md``). Demonstrations
cost one simulator fork per instance per decision (about 0.07 s per decision
on azure-code).

WAIT: when the config masks it (``allow_wait = False``, the default) the
margin loss is taken over the instance actions only, as the policy never
considers WAIT.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from phaser.rl import network
from phaser.rl.config import DQNConfig, parse_teacher
from phaser.rl.losses import make_optimizer, make_pretrain_update
from phaser.rl.replay import ReplayBuffer


def collect(make_env: Callable[[], object], teacher: str, seeds: list[int], capacity: int,
            lookahead_horizon_s: float = 10.0) -> tuple[ReplayBuffer, list[float]]:
    """Transitions of ``teacher`` on each workload seed; returns the buffer and each episode's mean E2E.

    ``teacher`` is a heuristic (``phaser.policies.make_policy(name)``) or
    ``lookahead[:<heuristic>]``: the clairvoyant one-step lookahead over that
    heuristic (``phaser.sim.lookahead``, default workload-aware), which reads the
    simulator's future to choose; ``predicted-lookahead[:<heuristic>]`` is the
    same lookahead blindfolded to predicted lengths and no future arrivals.
    The network that imitates either sees only the router's features, so it
    learns what of the teacher's choices those features can predict (learning
    from a privileged expert, as in DAgger's and learning-to-search's oracles).
    """
    from phaser.policies import make_policy
    from phaser.sim.lookahead import Lookahead

    env = make_env()
    rb = ReplayBuffer(capacity, env.obs_dim)
    e2e = []
    base, clairvoyant = parse_teacher(teacher)
    for s in seeds:
        obs, done = env.reset(s), False
        if clairvoyant is not None:
            la = Lookahead(env.sim, make_policy(base, env.n_instances, s), lookahead_horizon_s, clairvoyant)
            act = la.act
        else:
            policy = make_policy(teacher, env.n_instances, s)

            def act(policy=policy):
                a = policy.decide(*env.decision)
                return env.n_instances if a is None else int(a)
        while not done:
            a = act()
            next_obs, r, done, info = env.step(a)
            rb.add(obs, a, r, next_obs, done, info.get("h", 0.0), info.get("ticks", 1.0))
            obs = next_obs
        e2e.append(float(info["episode"]["e2e_mean"]))
    return rb, e2e


def pretrain(rb: ReplayBuffer, n_instances: int, cfg: DQNConfig, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """DQfD pre-training on the demonstrations; returns flat params and the final (td, margin, agreement)."""
    rng = np.random.default_rng(seed)
    q_net = network.build(cfg.arch, n_instances, cfg.hidden)
    params = network.init_params(q_net, n_instances, jax.random.PRNGKey(seed), rb.obs.shape[1])
    target = params
    tx = make_optimizer(cfg, cfg.pretrain_learning_rate)
    opt_state = tx.init(params)
    n_choices = n_instances + 1 if cfg.allow_wait else n_instances
    update = make_pretrain_update(q_net, cfg, tx, n_choices)
    aux = (np.nan, np.nan, np.nan)
    for k in range(cfg.pretrain_updates):
        b = rb.sample(rng, cfg.batch_size)
        params, opt_state, aux = update(params, target, opt_state, b.obs, b.action, b.reward, b.next_obs, b.done,
                                        b.ticks)
        if (k + 1) % cfg.target_update_every == 0:
            target = params
    td, je, agree = (float(x) for x in aux)
    return network.flatten(params), {"td_loss": td, "margin_loss": je, "agreement": agree}
