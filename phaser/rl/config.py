"""Every hyperparameter of the learned router in one frozen dataclass
(``DQNConfig``, saved in each checkpoint; the reasons for its values are in
``phaser.rl.dqn``'s docstring) and how an imitation teacher is named
(``parse_teacher``). No JAX here: the router and the trainer read a
checkpoint's config without building a learner."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from phaser.rl import network
from phaser.rl.hurl import hurl_lambda

#: rl-families: the cross-family imitation router (``phaser.rl.families``); to the DQN learner it is plain Double DQN
DQN_VARIANTS = ("rl-baseline", "rl-aware", "rl-guided")
VARIANTS = DQN_VARIANTS + ("rl-families",)

LOOKAHEAD_TEACHERS = {"lookahead": True, "predicted-lookahead": False}


def parse_teacher(teacher: str) -> tuple[str, bool | None]:
    """``"min-min"`` → ("min-min", None): that heuristic; ``"lookahead[:<heuristic>]"`` →
    (heuristic, True): the clairvoyant lookahead over it (default workload-aware);
    ``"predicted-lookahead[:<heuristic>]"`` → (heuristic, False): the lookahead
    blindfolded to predicted lengths and no future arrivals."""
    head, _, base = teacher.partition(":")
    if head in LOOKAHEAD_TEACHERS:
        return base or "workload-aware", LOOKAHEAD_TEACHERS[head]
    return teacher, None


# --- 1. configuration ---------------------------------------------------------

@dataclass(frozen=True)
class DQNConfig:
    variant: str = "rl-guided"
    arch: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    batch_size: int = 512
    learning_rate: float = 5e-4
    gamma: float = 0.995
    buffer_size: int = 100_000
    learning_starts: int = 2_000
    train_every: int = 4
    target_update_every: int = 250
    max_grad_norm: float = 10.0
    huber_delta: float = 1.0
    eps_start: float = 1.0
    eps_end: float = 0.0
    eps_episodes: int = 20
    n_envs: int = 4
    # reward (see phaser.rl.env): units are "requests-in-system per 0.02 s tick"
    completion_bonus: float = 60.0
    reward_scale: float = 0.002
    allow_wait: bool = False
    mixing_weight: float = 1.0
    hurl_scale: float = 10.0
    hurl_decay: float = 0.5
    # HuRL λ never exceeds this (1 = the paper's full decay to plain Double DQN)
    lam_max: float = 1.0
    # warm start by imitation (phaser.rl.imitation, DQfD): "" = none, else the teacher: a heuristic
    # policy name, or "[predicted-]lookahead[:<heuristic>]" (phaser.sim.lookahead; clairvoyant, or
    # blindfolded to predicted lengths)
    warm_start: str = ""
    lookahead_horizon_s: float = 10.0
    demo_episodes: int = 8
    pretrain_updates: int = 2_000
    pretrain_learning_rate: float = 5e-4
    margin: float = 0.8
    margin_weight: float = 1.0
    finetune_margin: bool = True

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; known: {', '.join(VARIANTS)}")
        if self.arch not in network.ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; known: {', '.join(network.ARCHS)}")
        if self.warm_start:
            from phaser.policies import heuristics

            teacher, _ = parse_teacher(self.warm_start)
            if teacher not in heuristics():
                raise ValueError(f"warm_start {self.warm_start!r}: the teacher must be a heuristic "
                                 f"({', '.join(heuristics())}), lookahead[:<heuristic>] or "
                                 f"predicted-lookahead[:<heuristic>]")
        if not self.lookahead_horizon_s > 0:
            raise ValueError(f"lookahead_horizon_s must be > 0, got {self.lookahead_horizon_s}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DQNConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        if "hidden" in d:
            d["hidden"] = tuple(d["hidden"])
        return cls(**d)

    def epsilon(self, episode: int) -> float:
        """Linear from eps_start to eps_end over the first eps_episodes episodes."""
        if self.eps_episodes <= 0 or episode >= self.eps_episodes:
            return self.eps_end
        return self.eps_start + (self.eps_end - self.eps_start) * episode / self.eps_episodes

    def lam(self, episode: int) -> float:
        """HuRL λ for this episode: 1 (plain Double DQN) unless the variant is rl-guided."""
        if self.variant != "rl-guided":
            return 1.0
        return min(hurl_lambda(episode, self.hurl_decay), self.lam_max)
