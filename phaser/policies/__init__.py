"""Routing policies, one small module each, composed by name via the registry
in ``base``. ``load_all`` imports every module so each registers itself."""

import importlib
import pkgutil

from phaser.policies.base import WAIT, Policy, available, heuristics, is_learned, make_policy, register

__all__ = ["WAIT", "Policy", "available", "heuristics", "is_learned", "make_policy", "register", "load_all"]


def load_all() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("base",) and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
