"""rl, rl-baseline, rl-aware, rl-guided: trained Double-DQN routers.

Each factory takes ``checkpoint=PATH`` (a checkpoint version directory, or a
root whose latest version is used — ``phaser train --out DIR`` writes one).
Without it, ``rl-baseline`` / ``rl-aware`` / ``rl-guided`` load the default
checkpoint shipped in ``phaser/checkpoints/<variant>/`` (its README has the
command that produced it); ``rl`` serves any variant and needs a checkpoint
(it falls back to the shipped ``rl-guided``). The shipped checkpoints are
per-instance ``shared`` networks (``phaser.rl.network``), so they serve any
instance count — every built-in scenario — without ``--checkpoint``.

A named variant refuses a checkpoint of another variant (asking for
``rl-aware`` and silently getting ``rl-guided`` would make a benchmark lie).
The network, features and checks live in ``phaser.rl``; JAX is not imported
on this path (routing uses the numpy forward pass).
"""

from __future__ import annotations

from pathlib import Path

from phaser.errors import PhaserError
from phaser.policies.base import register

#: Where the default trained checkpoints live (package data).
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
VARIANTS = ("rl-baseline", "rl-aware", "rl-guided", "rl-families")


def default_checkpoint(variant: str) -> Path:
    return DEFAULT_DIR / variant


def _make(name: str, variant: str | None, n_instances: int, seed: int, checkpoint=None, epsilon: float = 0.0):
    from phaser.rl.checkpoint import load_checkpoint
    from phaser.rl.policy import RLPolicy

    path = Path(checkpoint) if checkpoint else default_checkpoint(variant or "rl-guided")
    if not checkpoint and not path.exists():
        raise PhaserError(f"{name}: no default checkpoint shipped at {path}; "
                          f"train one with `phaser train --variant {variant or 'rl-guided'}` and pass checkpoint=DIR")
    ck = load_checkpoint(path)
    if variant is not None and ck.variant != variant:
        raise PhaserError(f"{name}: checkpoint {ck.path} is a {ck.variant} checkpoint; use --policy {ck.variant} "
                          f"or --policy rl")
    return RLPolicy.from_checkpoint(ck, n_instances, name=name, seed=seed, epsilon=float(epsilon))


@register("rl")
def make_rl(n_instances: int, seed: int = 0, checkpoint=None, epsilon: float = 0.0, **_):
    return _make("rl", None, n_instances, seed, checkpoint, epsilon)


@register("rl-baseline")
def make_baseline(n_instances: int, seed: int = 0, checkpoint=None, epsilon: float = 0.0, **_):
    return _make("rl-baseline", "rl-baseline", n_instances, seed, checkpoint, epsilon)


@register("rl-aware")
def make_aware(n_instances: int, seed: int = 0, checkpoint=None, epsilon: float = 0.0, **_):
    return _make("rl-aware", "rl-aware", n_instances, seed, checkpoint, epsilon)


@register("rl-families")
def make_families(n_instances: int, seed: int = 0, checkpoint=None, epsilon: float = 0.0, **_):
    """One router for every leaderboard family (``phaser.rl.families``: DAgger on the blindfolded lookahead)."""
    return _make("rl-families", "rl-families", n_instances, seed, checkpoint, epsilon)


@register("rl-guided")
def make_guided(n_instances: int, seed: int = 0, checkpoint=None, epsilon: float = 0.0, **_):
    return _make("rl-guided", "rl-guided", n_instances, seed, checkpoint, epsilon)
