"""The Q-network's forward pass in numpy only: what routing runs.

Same maths as the Flax modules of ``phaser.rl.network`` (tested equal to float32
precision in ``tests/rl/test_network.py``); kept free of JAX so the router and
``phaser bench`` never import it, and because a jitted call's dispatch alone
costs more than this whole pass for a 64-64 network.
"""

from __future__ import annotations

import numpy as np

#: global features (queue length, prompt tokens, predicted bucket), stated once in
#: ``phaser.rl.features.GLOBAL``. The per-instance width depends on the feature
#: spec version (6 in v1, 8 in v2) and is read off the state's length.
from phaser.rl.features import N_GLOBAL


def split_state(x, n_instances: int):
    """State vector(s) → (global (..., 3), per-instance (..., N, F)), F = (len − 3) / N."""
    width = (x.shape[-1] - N_GLOBAL) // n_instances
    if N_GLOBAL + width * n_instances != x.shape[-1]:
        raise ValueError(f"state of length {x.shape[-1]} does not split into 3 + {n_instances} equal blocks")
    g = x[..., :N_GLOBAL]
    inst = x[..., N_GLOBAL:].reshape(x.shape[:-1] + (n_instances, width))
    return g, inst


def _tower(flat: dict[str, np.ndarray], prefix: str, n_hidden: int, x: np.ndarray, out: str) -> np.ndarray:
    for k in range(n_hidden):
        x = x @ flat[f"{prefix}_{k}.kernel"] + flat[f"{prefix}_{k}.bias"]
        np.maximum(x, 0.0, out=x)
    return x @ flat[f"{out}.kernel"] + flat[f"{out}.bias"]


def forward_np(flat: dict[str, np.ndarray], x: np.ndarray, arch: str, n_instances: int, n_hidden: int) -> np.ndarray:
    """Q-values for state vector(s) ``x`` with numpy only (same maths as the Flax modules)."""
    if arch == "mlp":
        return _tower(flat, "hidden", n_hidden, x, "out")
    g, inst = split_state(x, n_instances)
    mean = inst.mean(axis=-2, keepdims=True)
    per = np.concatenate(
        [np.broadcast_to(g[..., None, :], inst.shape[:-1] + (g.shape[-1],)), inst,
         np.broadcast_to(mean, inst.shape)], axis=-1)
    scores = _tower(flat, "score", n_hidden, per, "score_out")[..., 0]
    w = np.concatenate([g, mean[..., 0, :], inst.max(axis=-2)], axis=-1)
    wait = _tower(flat, "wait", n_hidden, w, "wait_out")
    return np.concatenate([scores, wait], axis=-1)
