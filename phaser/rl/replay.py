"""Uniform experience replay: a fixed-size ring buffer of numpy arrays.

Each transition stores what the Double-DQN/HuRL target needs and nothing else:
``obs, action, reward, next_obs, done, h, ticks`` where ``h`` is the heuristic
value of the post-decision state (``phaser.rl.hurl``; 0 for variants without
guidance) and ``ticks`` the step's duration in router ticks (the learner
discounts by γ^ticks: decisions come at irregular times, see ``phaser.rl.dqn``). Storage is preallocated (float32 observations) so adding is a few
array writes and sampling is one fancy-index per field — the learner samples
512 transitions per update, so this must not be a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray
    h: np.ndarray
    ticks: np.ndarray


class ReplayBuffer:
    def __init__(self, capacity: int, obs_dim: int):
        if capacity < 1:
            raise ValueError("replay capacity must be >= 1")
        self.capacity = capacity
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros(capacity, np.int32)
        self.reward = np.zeros(capacity, np.float32)
        self.done = np.zeros(capacity, np.float32)
        self.h = np.zeros(capacity, np.float32)
        self.ticks = np.ones(capacity, np.float32)
        self._pos = 0
        self.size = 0

    def add(self, obs, action: int, reward: float, next_obs, done: bool, h: float = 0.0, ticks: float = 1.0) -> None:
        i = self._pos
        self.obs[i] = obs
        self.next_obs[i] = next_obs
        self.action[i] = action
        self.reward[i] = reward
        self.done[i] = float(done)
        self.h[i] = h
        self.ticks[i] = ticks
        self._pos = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx = rng.integers(0, self.size, size=batch_size)
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx], self.done[idx], self.h[idx],
                     self.ticks[idx])
