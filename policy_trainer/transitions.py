"""Turn joined (assignment, completion) records into DQN transitions.

A transition is ``(obs, action, reward, next_obs)``: ``obs`` and ``action`` are
what the router saw and did (``Assignment.features``/``action``), ``next_obs``
is the features of the *next* routing decision, and the reward is the offline
learner's, computed by ``phaser.rl.env.reward_parts`` — the same function
``RouterEnv.step`` uses, so the online trainer optimises exactly what
``phaser train`` optimises:

    r = scale · ( −½·(S(T₀) + S(T₁))·(T₁ − T₀)/tick  +  bonus · completions in (T₀, T₁] )

with ``S(T) = Σ over requests in the system at T of (1 − produced/expected)``.

What the stream can and cannot give (decisions taken here):

* **S(T) is reconstructed from completions.** A request is in the system from
  ``arrival_s`` to ``finish_s`` (router queue included, as in the simulator);
  it has produced 0 tokens before ``first_token_s``, 1 at the first token,
  and — decode iterations being near-equal in length — linearly more up to
  ``output_tokens`` at ``finish_s``. The simulator counts the exact tokens;
  the linear interpolation is the approximation, exact for a steady batch.
* **A transition is final only after ``settle_s``** (default 60 stack s): it
  needs every request alive at T₀ and T₁ to have completed. 60 s is ~10× the
  paper-mix mean E2E at its nominal load; a request still unfinished then is
  missing from S (the joiner's ``pending`` shows how many) rather than
  holding the trainer.
* **Only routed decisions are seen.** The router publishes assignments, not
  WAITs, so online learning never updates the WAIT action (its Q-value keeps
  what offline training gave it); T₁ is the next *routed* decision.
* **No mixing / HuRL term online.** ``rl-aware``'s mixing penalty and
  ``rl-guided``'s h need the heuristic's penalties of the decision state,
  which an assignment does not carry. HuRL's weight (1 − λ) decays to ~0 after
  a few episodes anyway (phaser.rl.hurl), so online the guided variant
  optimises exactly this reward; for ``rl-aware`` the term is dropped (h = 0,
  λ = 1). Documented limitation, not a silent change.
* The stream never ends: ``done`` is always 0.

A restarted trainer gets its pending decisions and lifetimes back
(``state()``/``restore()``, saved with the learner's state at each publish);
a decision re-read from the stream after a restart is recognised by its
request id (or by being older than the last emitted transition) and not
counted twice.

Memory is bounded: decisions wait at most ``settle_s`` and lifetimes are kept
only while they can still overlap a future decision (``max_records`` caps
both; the oldest are dropped and counted).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from phaser.rl.env import reward_parts
from policy_trainer.joiner import Joined
from policy_trainer.counters import Counters

#: decision times per vectorised S(T) block; rows x lifetimes stays ~ a few MB
_BLOCK = 512


@dataclass
class TransitionBatch:
    obs: np.ndarray  # (n, d) float32
    action: np.ndarray  # (n,) int32
    reward: np.ndarray  # (n,) float32
    next_obs: np.ndarray  # (n, d) float32
    decided_s: np.ndarray  # (n,) float64, T0 of each transition

    def __len__(self) -> int:
        return len(self.action)


@dataclass
class BuilderCounters(Counters):
    decisions: int = 0
    transitions: int = 0
    no_features: int = 0
    late: int = 0
    dropped: int = 0


@dataclass
class TransitionBuilder:
    obs_dim: int
    completion_bonus: float = 60.0
    reward_scale: float = 0.002
    settle_s: float = 60.0
    max_records: int = 200_000
    counters: BuilderCounters = field(default_factory=BuilderCounters)

    def __post_init__(self) -> None:
        # pending decisions, sorted by decided_s: (decided_s, request id, obs, action)
        self._dec: list[tuple[float, str, np.ndarray, int]] = []
        # lifetimes of joined requests: id -> (arrival, first_token, finish, output_tokens)
        self._life: dict[str, tuple[float, float, float, int]] = {}
        self._t_done = -np.inf  # T0 of the last emitted transition
        self._ids: set[str] = set()  # request ids in _dec

    @classmethod
    def for_config(cls, obs_dim: int, cfg, **kw) -> "TransitionBuilder":
        """Reward constants from the learner's ``DQNConfig`` (never restated here)."""
        return cls(obs_dim, completion_bonus=cfg.completion_bonus, reward_scale=cfg.reward_scale, **kw)

    def add(self, j: Joined) -> None:
        a, c = j.assignment, j.completion
        self._life[c.request_id] = (c.arrival_s, c.first_token_s, c.finish_s, c.output_tokens)
        if len(self._life) > self.max_records:
            oldest = next(iter(self._life))
            del self._life[oldest]
            self.counters.dropped += 1
        if a.features is None or a.action < 0:
            self.counters.no_features += 1
            return
        if len(a.features) != self.obs_dim:
            self.counters.no_features += 1
            return
        if a.decided_s <= self._t_done:
            self.counters.late += 1  # its slot in the decision chain is already used
            return
        if a.request.id in self._ids:  # re-read after a restart: already pending
            return
        self._ids.add(a.request.id)
        self.counters.decisions += 1
        item = (a.decided_s, a.request.id, np.asarray(a.features, np.float32), int(a.action))
        bisect.insort(self._dec, item, key=lambda x: (x[0], x[1]))
        if len(self._dec) > self.max_records:
            self._ids.discard(self._dec.pop(0)[1])
            self.counters.dropped += 1

    @property
    def pending(self) -> int:
        return len(self._dec)

    def ready(self, now_s: float) -> TransitionBatch | None:
        """Emit every transition whose T₁ is at least ``settle_s`` old."""
        horizon = now_s - self.settle_s
        k = bisect.bisect_right(self._dec, horizon, key=lambda x: x[0])  # decisions with T <= horizon
        if k < 2:
            return None
        chain = self._dec[:k]
        t = np.array([d[0] for d in chain])
        s = self._S(t)
        t0, t1 = t[:-1], t[1:]
        fin = np.sort(np.array([v[2] for v in self._life.values()]))
        completed = np.searchsorted(fin, t1, side="right") - np.searchsorted(fin, t0, side="right")
        progress, bonus, _ = reward_parts(s[:-1], s[1:], t1 - t0, completed, self.completion_bonus)
        reward = ((progress + bonus) * self.reward_scale).astype(np.float32)
        obs = np.stack([d[2] for d in chain])
        batch = TransitionBatch(obs[:-1], np.array([d[3] for d in chain[:-1]], np.int32), reward, obs[1:], t0)
        # the last decision of the chain is the T0 of the next transition: keep it
        for d in self._dec[:k - 1]:
            self._ids.discard(d[1])
        self._dec = self._dec[k - 1:]
        self._t_done = t0[-1]
        self.counters.transitions += len(batch)
        # lifetimes that ended before the next T0 can no longer matter
        keep_after = self._dec[0][0]
        self._life = {rid: v for rid, v in self._life.items() if v[2] > keep_after}
        return batch

    # ------------------------------------------------------------ restart
    def state(self) -> dict[str, np.ndarray]:
        d, life = self._dec, list(self._life.items())
        return {
            "builder/dec_t": np.array([x[0] for x in d], np.float64),
            "builder/dec_id": np.array([x[1] for x in d], dtype=np.str_),
            "builder/dec_obs": np.stack([x[2] for x in d]) if d else np.zeros((0, self.obs_dim), np.float32),
            "builder/dec_action": np.array([x[3] for x in d], np.int32),
            "builder/life_id": np.array([k for k, _ in life], dtype=np.str_),
            "builder/life": np.array([v for _, v in life], np.float64).reshape(-1, 4),
            "builder/t_done": np.array([self._t_done], np.float64),
        }

    def restore(self, state: dict[str, np.ndarray]) -> None:
        obs = state["builder/dec_obs"]
        if obs.shape[1:] != (self.obs_dim,):
            raise ValueError(f"saved decisions have {obs.shape[1:]} features, this builder {self.obs_dim}")
        self._dec = [(float(t), str(i), o.astype(np.float32), int(a)) for t, i, o, a in
                     zip(state["builder/dec_t"], state["builder/dec_id"], obs, state["builder/dec_action"])]
        self._ids = {d[1] for d in self._dec}
        self._life = {str(k): (float(v[0]), float(v[1]), float(v[2]), int(v[3]))
                      for k, v in zip(state["builder/life_id"], state["builder/life"])}
        self._t_done = float(state["builder/t_done"][0])

    def _S(self, t: np.ndarray) -> np.ndarray:
        """Σ over requests alive at each time of (1 − produced/expected), vectorised."""
        if not self._life:
            return np.zeros_like(t)
        lt = np.array(list(self._life.values()), np.float64)
        lt = lt[np.argsort(lt[:, 0], kind="stable")]  # by arrival, so a block's candidates are a prefix
        res = np.empty_like(t)
        for i in range(0, len(t), _BLOCK):
            tt = t[i:i + _BLOCK]
            # only lifetimes overlapping this block's time span: arrival <= max(tt), finish > min(tt)
            cand = lt[:np.searchsorted(lt[:, 0], tt[-1], side="right")]
            cand = cand[cand[:, 2] > tt[0]]
            arr, ft, fin, out = cand[:, 0], cand[:, 1], cand[:, 2], cand[:, 3]
            span = np.maximum(fin - ft, 1e-9)
            col = tt[:, None]
            alive = (col >= arr) & (col < fin)
            produced = np.where(col < ft, 0.0, 1.0 + (out - 1.0) * (col - ft) / span)
            res[i:i + _BLOCK] = np.where(alive, 1.0 - produced / out, 0.0).sum(axis=1)
        return res
