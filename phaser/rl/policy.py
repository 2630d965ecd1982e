"""``RLPolicy``: a trained Q-network behind the one routing-policy interface.

``decide(job, view)`` encodes the state (``phaser.rl.features``), runs the numpy
forward pass of the checkpoint's weights (``phaser.rl.network.forward_np``) and
returns the argmax: an instance index, or ``WAIT`` (None) for the last action.
No JAX on this path: a jitted call's dispatch alone costs more than the whole
numpy pass for a 64-64 network (measured by ``phaser bench router-latency``).

The same object runs in the simulator, the RL environment's evaluation and the
live router, so a trained network drops into ``phaser router --policy rl
--checkpoint PATH`` unchanged. ``last_features`` exposes what the policy saw
(the router publishes it with the assignment). ``epsilon`` > 0 makes it
ε-greedy with its own seeded RNG (used only for exploration; 0 by default).

Starvation guard: a learnt policy could answer WAIT for ever (an untrained
network often does), which would stall the router queue. WAIT is therefore
masked once the job has waited ``max_wait_s`` (default 10 s — about five times
the 2.05 s mean router wait the paper reports for its guided router, so it
never binds for a sensible policy); the best instance is taken instead. The RL
environment applies the same mask during training (``wait_allowed``).
"""

from __future__ import annotations

import numpy as np

from phaser.rl.checkpoint import Checkpoint, check_compatible, load_checkpoint
from phaser.rl.features import Encoder, FeatureSpec
from phaser.rl.inference import forward_np

MAX_WAIT_S = 10.0


def wait_allowed(job, view, max_wait_s: float = MAX_WAIT_S) -> bool:
    """WAIT is allowed while the job has waited less than ``max_wait_s``."""
    return view.now - job.arrival_s < max_wait_s


class RLPolicy:
    def __init__(self, params: dict[str, np.ndarray], arch: str, n_hidden: int, spec: FeatureSpec,
                 name: str = "rl", version: int = 0, seed: int = 0, epsilon: float = 0.0,
                 max_wait_s: float = MAX_WAIT_S, allow_wait: bool = True):
        self.name = name
        self.version = version
        self.n = spec.n_instances
        self.arch = arch
        self.n_hidden = n_hidden
        self.params = {k: np.asarray(v, np.float32) for k, v in params.items()}
        self.encoder = Encoder(spec)
        self.epsilon = epsilon
        self.max_wait_s = max_wait_s if allow_wait else 0.0
        self._rng = np.random.default_rng(seed)
        self.last_features: list[float] | None = None
        self.last_action: int = -1

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint | str, n_instances: int, name: str | None = None,
                        seed: int = 0, epsilon: float = 0.0) -> "RLPolicy":
        if not isinstance(ckpt, Checkpoint):
            ckpt = load_checkpoint(ckpt)
        spec = check_compatible(ckpt, n_instances)
        hidden = ckpt.metadata["config"]["hidden"]
        return cls(ckpt.params, ckpt.arch, len(hidden), spec, name=name or ckpt.variant,
                   version=ckpt.version, seed=seed, epsilon=epsilon,
                   allow_wait=bool(ckpt.metadata["config"].get("allow_wait", True)))

    def q_values(self, x: np.ndarray) -> np.ndarray:
        return forward_np(self.params, x, self.arch, self.n, self.n_hidden)

    def decide(self, job, view) -> int | None:
        x = self.encoder(job, view)
        self.last_features = x.tolist()
        n_choices = self.n + 1 if wait_allowed(job, view, self.max_wait_s) else self.n
        if self.epsilon > 0.0 and self._rng.random() < self.epsilon:
            a = int(self._rng.integers(0, n_choices))
        else:
            # exact ties (identical instances: the shared network scores identical inputs
            # identically) are broken at random, seeded, as llm-d's max-score picker does; argmax
            # would always take the lowest index and pile work onto a few instances, leaving the
            # others' prefix caches unused (prefix-heavy, 16 instances: 9 of 16 ever used, −7.5 %)
            q = self.q_values(x)[:n_choices]
            ties = np.flatnonzero(q >= q.max())
            a = int(ties[0] if len(ties) == 1 else ties[int(self._rng.integers(len(ties)))])
        self.last_action = a
        return None if a == self.n else a
