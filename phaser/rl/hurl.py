"""Heuristic guidance (HuRL) for the ``rl-guided`` variant: the maths, pure.

Source: Cheng, Kolobov & Swaminathan, "Heuristic-Guided Reinforcement
Learning", NeurIPS 2021. Given a heuristic h(s) ≈ V*(s) and a mixing
coefficient λ ∈ [0, 1], HuRL solves the *reshaped* MDP

    r̃(s, a, s') = r(s, a) + (1 − λ) · γ · h(s')        discount γ̃ = λ · γ

so a one-step Bellman target becomes

    y = r + (1 − λ)·γ·h(s') + λ·γ·V̂(s')                            (HuRL)

λ = 0 trusts the heuristic completely (a one-step problem: y = r + γ h(s'));
λ = 1 is the original MDP. HuRL raises λ towards 1 during training, so the
agent ends up optimising the true objective while the heuristic shortens the
effective horizon early on.

Our mapping (the paper of phaser, Jain et al. 2025, gives only "h = mixing
penalty of the chosen instance minus that of the minimum-impact instance,
blended into the bootstrap target with a weight that decays per episode k as
e^(−0.5k)"):

* **blend weight** ``1 − λ_k = e^(−decay·k)``, decay = 0.5, k = number of
  finished training episodes; so λ_0 = 0, λ_2 = 0.63, λ_6 = 0.95.
* **V̂(s')** is the Double-DQN bootstrap ``Q_target(s', argmax_a Q_online(s', a))``
  (``phaser.rl.losses.hurl_target``), masked by ``1 − done``; h of a terminal
  state is 0 like its value.
* **h(s')**: the routing decision fully determines the post-decision state s'
  (the request now sits on instance a), so a heuristic value of s' is how much
  worse the chosen placement is than the heuristic's own best placement:
  ``h = −scale · (pen(a) − min_m pen(m))`` with ``pen`` from
  ``phaser.policies.mixing`` (never re-derived here). h ≤ 0, and 0 exactly when
  the agent did what the workload-aware heuristic would do.
* **WAIT** places nothing; the heuristic never waits, so we charge WAIT the
  mean regret of the instances (as good as a random placement in the
  heuristic's eyes): ``h(WAIT) = −scale · mean_m (pen(m) − min pen)``.
* ``scale`` converts penalty units into reward units (``DQNConfig.hurl_scale``).
"""

from __future__ import annotations

import math
from typing import Sequence


def hurl_lambda(episode: int, decay: float = 0.5) -> float:
    """λ_k = 1 − e^(−decay·k): weight of the true bootstrap at episode k (0-based)."""
    if episode < 0:
        raise ValueError("episode must be >= 0")
    return 1.0 - math.exp(-decay * episode)


def regret(penalties: Sequence[float], action: int) -> float:
    """Mixing penalty of ``action`` minus the minimum over instances (≥ 0).

    ``action == len(penalties)`` is WAIT: the mean regret over instances."""
    lo = min(penalties)
    if action == len(penalties):
        return sum(p - lo for p in penalties) / len(penalties)
    return penalties[action] - lo


def guidance(penalties: Sequence[float], action: int, scale: float) -> float:
    """h(s') for the transition that took ``action`` (≤ 0, in reward units)."""
    return -scale * regret(penalties, action)
