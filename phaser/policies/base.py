"""The one routing-policy interface, used unchanged by the router service and
the simulator.

A policy sees a ``Job`` (the request without its oracle output length) and the
router's ``ClusterView``, and returns an instance index, or ``WAIT`` (None) to
hold the request in the router queue until the next router tick.

Policies are plain objects with their own seeded RNG where they need one, so a
run is deterministic for a given seed. Policies that compute a feature vector
(the RL policies) expose it as ``last_features`` so the router can publish what
the policy saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from phaser.errors import PhaserError

if TYPE_CHECKING:
    from phaser.cluster.view import ClusterView
    from phaser.types import Job

WAIT = None


@runtime_checkable
class Policy(Protocol):
    name: str
    version: int

    def decide(self, job: "Job", view: "ClusterView") -> int | None:
        """Return the instance index for ``job``, or ``WAIT``."""
        ...


#: name -> factory(n_instances, seed, **options) -> Policy
_REGISTRY: dict[str, Callable[..., Policy]] = {}


def register(name: str):
    def deco(factory):
        _REGISTRY[name] = factory
        return factory

    return deco


def available() -> list[str]:
    from phaser import policies as _p  # noqa: F401  (imports every policy module)

    _p.load_all()
    return sorted(_REGISTRY)


def is_learned(name: str) -> bool:
    """Learned (RL) policies: ``rl`` and ``rl-*``; they need a checkpoint."""
    return name == "rl" or name.startswith("rl-")


def heuristics() -> list[str]:
    """Every registered policy that is not learned."""
    return [n for n in available() if not is_learned(n)]


def make_policy(name: str, n_instances: int, seed: int = 0, **options) -> Policy:
    """Build a policy by name. Unknown names raise ``PhaserError`` listing the known ones."""
    names = available()
    if name not in _REGISTRY:
        raise PhaserError(f"unknown policy {name!r}; known: {', '.join(names)}")
    return _REGISTRY[name](n_instances=n_instances, seed=seed, **options)


def option_names(name: str) -> set[str]:
    """The keyword options policy ``name`` takes (``--policy-opt KEY=VALUE``), from its factory's signature."""
    import inspect

    available()
    if name not in _REGISTRY:
        raise PhaserError(f"unknown policy {name!r}; known: {', '.join(available())}")
    params = inspect.signature(_REGISTRY[name]).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD} - {"n_instances", "seed"}


def check_options(policies: list[str], options: dict) -> None:
    """Refuse an option none of ``policies`` takes (it would be silently ignored)."""
    taken = {p: option_names(p) for p in policies}
    for key in options:
        if not any(key in t for t in taken.values()):
            known = "; ".join(f"{p}: {', '.join(sorted(t)) or '(none)'}" for p, t in taken.items())
            raise PhaserError(f"no policy here takes option {key!r} ({known})")
