"""The cluster simulator as an RL environment: one step = one routing decision.

``RouterEnv.reset(seed)`` builds a fresh ``ClusterSim`` for the workload seed
and runs it to the first decision; ``step(action)`` applies the action (an
instance index, or ``n_instances`` = WAIT, re-asked at the next router tick)
and runs the simulator to the next decision. The observation is
``phaser.rl.features`` of ``(job, view)`` — the same encoder ``RLPolicy`` uses
in the router, so what is learnt here is what is served there.

Reward of the step from decision time T₀ to the next decision T₁ (units:
"requests in the system per router tick", tick = 0.02 s as in the paper):

    r = − ½·(S(T₀) + S(T₁)) · (T₁ − T₀) / tick          progress penalty
        + bonus · (completions in (T₀, T₁])                bonus = 60 (paper)
        − w · regret(a) / tick                             rl-aware only

``S(T) = Σ over requests in the system (arrived, not finished, router queue
included) of (1 − produced/expected)``, expected = the request's true output
length (the simulator knows it; the reward is a training signal, never a
policy input). The paper charges S once per fixed 0.02 s tick; our decisions
come at arrivals and ticks at irregular times, so S is integrated over the
step's duration (trapezoid) and expressed per tick: the same quantity, and by
Little's law its sum over an episode is the total of the (progress-weighted)
latencies, which is what mean E2E measures.

The mixing term uses the heuristic's penalties of the decision state
(``phaser.policies.mixing.penalties``, seconds of latency added across
requests): ``regret(a) = pen(a) − min_m pen(m)`` (``phaser.rl.hurl``).
Seconds / tick converts them into the reward's unit, so w = 1 counts the
heuristic's estimate of added latency as if it were measured. For rl-guided
the same regret becomes the HuRL heuristic ``h = −regret/tick`` returned in
``info["h"]`` for the learner's target (not in r). The regret is computed only
for the variants that use it (it costs a pass over the instances).

Everything is multiplied by ``reward_scale`` (0.002 by default) so Q-values
stay O(1–10) for the Huber loss.

``info["ticks"]`` is the step's duration in ticks; the learner discounts a
step by γ^ticks (a semi-MDP: see ``phaser.rl.dqn``).

Episode end: after the last request is routed the simulator runs to the end
(``next_decision`` returns None once everything finished), so the terminal
step's trapezoid covers the drain: S falls from its value at the last decision
to 0 — an approximation of the drain's integral, but it does charge the last
placements for their consequences.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from phaser.policies.mixing import penalties
from phaser.rl.features import Encoder, FeatureSpec
from phaser.rl.hurl import regret
from phaser.rl.policy import wait_allowed

#: The paper's router tick (seconds): the reward's time unit.
TICK_S = 0.02


def reward_parts(s0, s1, dt, completed, bonus: float, regret_ticks=0.0, mixing_weight: float = 0.0):
    """The step reward's terms before ``reward_scale``: (progress, bonus, mixing).

    Works on floats or numpy arrays alike; shared by ``RouterEnv.step`` and the
    online trainer (``policy_trainer.transitions``) so both optimise one reward."""
    return -0.5 * (s0 + s1) * dt / TICK_S, bonus * completed, -mixing_weight * regret_ticks


class RouterEnv:
    """``make_sim(seed)`` returns a fresh steppable ``phaser.sim.ClusterSim``."""

    def __init__(self, make_sim: Callable[[int], object], n_instances: int, variant: str = "rl-guided",
                 completion_bonus: float = 60.0, reward_scale: float = 0.002, mixing_weight: float = 1.0,
                 hurl_scale: float = 10.0, allow_wait: bool = False):
        self.make_sim = make_sim
        self.n_instances = n_instances
        self.n_actions = n_instances + 1
        self.spec = FeatureSpec(n_instances)
        self.obs_dim = self.spec.size
        self.encode = Encoder(self.spec)
        self.variant = variant
        self.bonus = completion_bonus
        self.scale = reward_scale
        self.mixing_weight = mixing_weight
        self.hurl_scale = hurl_scale
        self.allow_wait = allow_wait
        self._needs_regret = variant in ("rl-aware", "rl-guided")
        self.sim = None
        self._job = self._view = None

    @classmethod
    def from_config(cls, make_sim, n_instances: int, cfg) -> "RouterEnv":
        return cls(make_sim, n_instances, cfg.variant, cfg.completion_bonus, cfg.reward_scale,
                   cfg.mixing_weight, cfg.hurl_scale, cfg.allow_wait)

    # -- gym-style API --------------------------------------------------------
    def reset(self, seed: int) -> np.ndarray:
        self.sim = self.make_sim(seed)
        self._t = 0.0
        self._S = 0.0
        self._ret_parts = {"progress": 0.0, "bonus": 0.0, "mixing": 0.0, "waits": 0}
        return self._next(first=True)[0]

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict]:
        sim, n = self.sim, self.n_instances
        reg = regret(penalties(self._job, self._view), action) / TICK_S if self._needs_regret else 0.0
        if action == n:
            self._ret_parts["waits"] += 1
        sim.apply(None if action == n else int(action))
        t0, s0 = self._t, self._S
        obs, done = self._next()
        dt = self._t - t0
        progress, bonus, mixing = reward_parts(s0, self._S, dt, self._completed, self.bonus, reg,
                                               self.mixing_weight if self.variant == "rl-aware" else 0.0)
        self._ret_parts["progress"] += progress
        self._ret_parts["bonus"] += bonus
        self._ret_parts["mixing"] += mixing
        info = {"h": -self.hurl_scale * reg * self.scale if self.variant == "rl-guided" else 0.0,
                "ticks": dt / TICK_S}
        if done:
            info["episode"] = dict(self._ret_parts, **self.sim.summary_dict())
        return obs, (progress + bonus + mixing) * self.scale, done, info

    @property
    def decision(self):
        """The pending ``(job, view)`` (what a heuristic policy decides on), None at the end."""
        return None if self._job is None else (self._job, self._view)

    def action_mask(self) -> np.ndarray:
        """Allowed actions now: every instance, and WAIT if the variant allows it
        and the job has not waited ``MAX_WAIT_S`` already (``RLPolicy``'s rule)."""
        m = np.ones(self.n_actions, bool)
        if not self.allow_wait or (self._job is not None and not wait_allowed(self._job, self._view)):
            m[-1] = False
        return m

    # -- internals --------------------------------------------------------------
    def _next(self, first: bool = False) -> tuple[np.ndarray, bool]:
        sim = self.sim
        d = sim.next_decision()
        prog = sim.reward_inputs()
        self._t = prog.now
        self._S = prog.remaining_fraction
        self._completed = 0 if first else prog.completed
        if d is None:
            self._job = self._view = None
            return np.zeros(self.obs_dim, np.float32), True
        self._job, self._view = d
        return self.encode(self._job, self._view), False
