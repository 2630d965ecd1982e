"""The Q-network: Flax for training, a numpy mirror for routing.

Two architectures, chosen by ``DQNConfig.arch``:

``mlp`` — the paper's network: the whole state vector (3 + 6·N numbers in
feature spec v1, 27 for N = 4; 3 + 8·N in v2) → ReLU(64) → ReLU(64) → N + 1 Q-values (one per instance, the last
for WAIT). A checkpoint is tied to its instance count.

``shared`` — a per-instance scoring network shared across instances (the same
weights score every instance): instance i is scored from
``[global, inst_i, mean_j inst_j]`` → ReLU(h1) → ReLU(h2) → 1, and WAIT from
``[global, mean_j inst_j, max_j inst_j]`` through its own small tower. It has the
same parameter count for any N, sees every instance through the same lens (an
improvement learnt about instance 2 applies to instance 0), and a checkpoint
trained at one N can score another N.

Which one is the default — decided by measurement (paper-v100, this 2-core
machine, shared with other jobs): ``mlp`` trains 2.7× faster (40 episodes:
84 s vs 229 s wall), decides faster (``phaser bench router-latency``, p50:
18 µs vs 39 µs at 4 instances; 36 µs vs 65 µs at 16) and reached the same
held-out mean E2E (best evaluation 7.27 s vs 7.26 s, round robin 7.25 s). So
``mlp`` is the default of ``phaser train``, as in the paper; ``shared`` is the
choice when one checkpoint must serve several cluster sizes (``--arch shared``).

The checkpoints *shipped* in ``phaser/checkpoints/`` are ``shared``: the
built-in scenarios have 4 (paper-v100/a100) and 8 instances (paper-8x,
azure-*), and one 4-instance-trained network per variant serves both. Measured
(``phaser bench --repeat 5``, mean E2E vs round robin): on paper-v100 the
shared rl-aware matched the mlp one (−0.02 % vs −0.04 %) and the shared
rl-baseline was better (−0.52 % vs −5.05 %). Trained at 4 and evaluated at
8 instances (paper-8x, --repeat 5) the shipped rl-guided kept its 4-instance
quality (+1.76 % vs +1.75 % on paper-v100; workload-aware +1.86 %): the
per-instance tower transfers across cluster sizes. It does not transfer
across workloads for free: rl-aware, trained on paper-mix only, piles a third
of azure-conv's requests (prompts up to ~30k tokens, unseen in training) on
one instance (−24.6 % vs round robin there).

Why a numpy mirror: routing asks for one decision at a time, and a jitted JAX
call costs tens of microseconds of dispatch before any arithmetic; the numpy
forward pass of a 64-64 network is a handful of small matmuls (a few µs).
``tests/rl/test_network.py`` proves the two agree to float32 precision, so the
logic is written twice only in the sense of two backends of one definition.

Parameters are exchanged as a flat ``{"layer.kernel": array}`` dict — what
``safetensors`` stores and what ``phaser.rl.inference.forward_np`` reads.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from phaser.rl.inference import N_GLOBAL, forward_np, split_state  # noqa: F401

ARCHS = ("mlp", "shared")


class MLPQ(nn.Module):
    """Fixed-size MLP: state → Q for every instance + WAIT."""

    n_actions: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x):
        for k, h in enumerate(self.hidden):
            x = nn.relu(nn.Dense(h, name=f"hidden_{k}")(x))
        return nn.Dense(self.n_actions, name="out")(x)


class SharedQ(nn.Module):
    """Per-instance scoring network shared across instances (+ a WAIT tower)."""

    n_instances: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x):
        g, inst = split_state(x, self.n_instances)
        mean = inst.mean(axis=-2, keepdims=True)
        n = self.n_instances
        per = jnp.concatenate(
            [jnp.broadcast_to(g[..., None, :], inst.shape[:-1] + (g.shape[-1],)), inst,
             jnp.broadcast_to(mean, inst.shape)], axis=-1)
        for k, h in enumerate(self.hidden):
            per = nn.relu(nn.Dense(h, name=f"score_{k}")(per))
        scores = nn.Dense(1, name="score_out")(per)[..., 0]  # (..., N)
        w = jnp.concatenate([g, mean[..., 0, :], inst.max(axis=-2)], axis=-1)
        for k, h in enumerate(self.hidden):
            w = nn.relu(nn.Dense(h, name=f"wait_{k}")(w))
        wait = nn.Dense(1, name="wait_out")(w)  # (..., 1)
        assert scores.shape[-1] == n
        return jnp.concatenate([scores, wait], axis=-1)


def build(arch: str, n_instances: int, hidden: Sequence[int]) -> nn.Module:
    if arch == "mlp":
        return MLPQ(n_actions=n_instances + 1, hidden=tuple(hidden))
    if arch == "shared":
        return SharedQ(n_instances=n_instances, hidden=tuple(hidden))
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")


def init_params(module: nn.Module, n_instances: int, key, obs_dim: int | None = None) -> dict:
    """Fresh parameters for states of length ``obs_dim`` (default: the current feature spec's)."""
    if obs_dim is None:
        from phaser.rl.features import FeatureSpec
        obs_dim = FeatureSpec(n_instances).size
    x = jnp.zeros((1, obs_dim), jnp.float32)
    return module.init(key, x)["params"]


# --- flat <-> nested parameters (the checkpoint format) -----------------------

def flatten(params) -> dict[str, np.ndarray]:
    """``{"hidden_0": {"kernel": a}}`` → ``{"hidden_0.kernel": np.ndarray}``."""
    out: dict[str, np.ndarray] = {}
    for layer, leaves in params.items():
        for leaf, arr in leaves.items():
            out[f"{layer}.{leaf}"] = np.asarray(jax.device_get(arr), dtype=np.float32)
    return out


def unflatten(flat: dict[str, np.ndarray]) -> dict:
    nested: dict[str, dict] = {}
    for key, arr in flat.items():
        layer, leaf = key.split(".", 1)
        nested.setdefault(layer, {})[leaf] = jnp.asarray(arr)
    return nested
