"""The online learner: the offline Double-DQN update step, fed from the stream.

Everything that learns is ``phaser.rl``'s: the Q-network (``network.build``),
the optimiser (``losses.make_optimizer``), the jitted Huber/Double-DQN update
(``losses.make_update``) and the replay buffer. This module only decides *when*
to call them on streamed transitions:

* **Start** from a checkpoint (its config, weights and variant are kept) or
  from scratch (``DQNConfig()`` defaults, weights from ``seed``).
* **Learning ratio**: one update per ``cfg.train_every`` new transitions, as
  offline (4 by default), once the replay holds ``cfg.learning_starts``; from a
  checkpoint the warm-up is one batch (the network is already trained).
  Updates per call are capped (``max_updates``) so a burst of transitions
  cannot stall the consumer; the deficit is carried over.
* **Target network** synced every ``cfg.target_update_every`` updates, as offline.
* **λ = 1, h = 0**: HuRL's blend has decayed away online (see
  ``policy_trainer.transitions``), so the target is plain Double DQN.
* **No WAIT from scratch**: the router publishes no assignment for a WAIT, so
  the stream holds no WAIT transition and the WAIT Q-value is never trained
  online, while a WAIT stalls the whole FCFS router queue. ``DQNConfig``'s
  default ``allow_wait = False`` already makes ``RLPolicy`` mask it; for a
  config that allows WAIT, a from-scratch network still starts with the WAIT
  output's bias at ``NO_WAIT_BIAS``, far below any Q-value the reward scale
  produces (|Q| ~ 1–100), which gradients never touch. A checkpoint trained
  offline keeps the WAIT it learnt.
* **Restart**: ``state()`` is everything a checkpoint's weights do not hold —
  the target network, Adam's moments and step count, the newest
  ``REPLAY_KEEP`` transitions of the replay, the update counters, the owed
  updates and the sampler's RNG — as flat numpy arrays that the store writes
  next to each published version (``CheckpointStore.save_state``);
  ``restore(state)`` puts them back, so a restarted trainer continues the
  same optimisation instead of starting Adam cold on an empty replay.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from phaser.rl.checkpoint import Checkpoint, check_compatible, spec_metadata
from phaser.rl.features import FeatureSpec
from policy_trainer.transitions import TransitionBatch

#: WAIT output bias of a from-scratch online network (see the module docstring)
NO_WAIT_BIAS = -1e4
#: transitions of the replay kept across a restart (newest first): 50,000 x 35
#: features x 2 (obs, next_obs) x 4 bytes = 14 MB for 4 instances
REPLAY_KEEP = 50_000


class OnlineLearner:
    def __init__(self, n_instances: int, checkpoint: Checkpoint | None = None, seed: int = 0,
                 max_updates: int = 64, overrides: dict | None = None):
        import jax

        from phaser.rl import losses, network
        from phaser.rl.config import DQNConfig
        from phaser.rl.replay import ReplayBuffer

        self.n = n_instances
        # a warm start keeps the feature version it was trained with (its
        # publications and the transitions built from them have that length)
        self.spec = check_compatible(checkpoint, n_instances) if checkpoint is not None else FeatureSpec(n_instances)
        if checkpoint is not None:
            cfg = DQNConfig.from_dict(checkpoint.metadata["config"])
            self.parent = checkpoint.version
            self.base_meta = {k: v for k, v in checkpoint.metadata.items()
                              if k not in ("checksum", "version", "format", "stats", "feature_spec")}
        else:
            cfg = DQNConfig()
            self.parent = 0
            self.base_meta = {"variant": cfg.variant, "arch": cfg.arch}
        if overrides:
            cfg = replace(cfg, **overrides)  # e.g. a smaller batch for tests; saved in the checkpoints
        self.cfg = cfg
        self.q_net = network.build(cfg.arch, n_instances, cfg.hidden)
        if checkpoint is not None:
            self.params = network.unflatten(checkpoint.params)
            self.learning_starts = min(cfg.batch_size, cfg.learning_starts)
        else:
            flat = network.flatten(network.init_params(self.q_net, n_instances, jax.random.PRNGKey(seed), self.spec.size))
            wait_bias = "out.bias" if cfg.arch == "mlp" else "wait_out.bias"
            flat[wait_bias] = flat[wait_bias].copy()
            flat[wait_bias][-1] = NO_WAIT_BIAS
            self.params = network.unflatten(flat)
            self.learning_starts = cfg.learning_starts
        self.target_params = self.params
        self.tx = losses.make_optimizer(cfg)
        self.opt_state = self.tx.init(self.params)
        self._update = losses.make_update(self.q_net, cfg, self.tx)
        self._flatten = network.flatten
        self.replay = ReplayBuffer(cfg.buffer_size, self.spec.size)
        self.rng = np.random.default_rng(seed)
        self.max_updates = max_updates
        self.transitions = 0
        self.updates = 0
        self._owed = 0.0
        self.last_loss = float("nan")
        self.last_q = float("nan")
        self.reward_sum = 0.0

    @property
    def obs_dim(self) -> int:
        return self.spec.size

    def add(self, batch: TransitionBatch) -> None:
        for i in range(len(batch)):
            self.replay.add(batch.obs[i], int(batch.action[i]), float(batch.reward[i]), batch.next_obs[i], False, 0.0)
        self.transitions += len(batch)
        self.reward_sum += float(batch.reward.sum())
        self._owed += len(batch) / self.cfg.train_every

    def train(self) -> int:
        """Run the updates owed by the transitions added so far (capped); returns how many ran."""
        if self.replay.size < self.learning_starts:
            self._owed = 0.0
            return 0
        n = min(int(self._owed), self.max_updates)
        self._owed -= n
        cfg = self.cfg
        for _ in range(n):
            b = self.replay.sample(self.rng, cfg.batch_size)
            self.params, self.opt_state, loss, q = self._update(
                self.params, self.target_params, self.opt_state, b.obs, b.action, b.reward, b.next_obs,
                b.done, b.h, 1.0)
            self.updates += 1
            if self.updates % cfg.target_update_every == 0:
                self.target_params = self.params
        if n:
            self.last_loss, self.last_q = float(loss), float(q)
        return n

    # ------------------------------------------------------------ restart
    def state(self) -> dict[str, np.ndarray]:
        """What a restart needs beyond the published weights, as flat arrays."""
        import jax

        out: dict[str, np.ndarray] = {}
        for k, v in self._flatten(self.target_params).items():
            out[f"target/{k}"] = np.asarray(v)
        for i, leaf in enumerate(jax.tree_util.tree_leaves(self.opt_state)):
            out[f"opt/{i:03d}"] = np.asarray(leaf)
        rb = self.replay
        n = min(rb.size, REPLAY_KEEP)
        idx = (np.arange(rb._pos - n, rb._pos) % rb.capacity) if n else np.zeros(0, np.int64)  # oldest..newest
        for name in ("obs", "next_obs", "action", "reward", "done", "h", "ticks"):
            out[f"replay/{name}"] = getattr(rb, name)[idx]
        out["counters"] = np.array([self.transitions, self.updates, self._owed, self.reward_sum], np.float64)
        out["rng"] = np.frombuffer(repr(self.rng.bit_generator.state).encode(), np.uint8)
        return out

    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Put back what ``state()`` saved; ValueError if it does not fit this learner
        (another architecture, feature size or optimiser)."""
        import ast

        import jax

        target = {k[len("target/"):]: v for k, v in state.items() if k.startswith("target/")}
        mine = self._flatten(self.params)
        if set(target) != set(mine) or any(target[k].shape != mine[k].shape for k in mine):
            raise ValueError("saved target network does not match this learner's network")
        leaves, treedef = jax.tree_util.tree_flatten(self.opt_state)
        saved = [state[k] for k in sorted(k for k in state if k.startswith("opt/"))]
        if len(saved) != len(leaves) or any(np.shape(a) != np.shape(b) for a, b in zip(saved, leaves)):
            raise ValueError("saved optimiser state does not match this learner's optimiser")
        obs = state["replay/obs"]
        if obs.ndim != 2 or obs.shape[1] != self.spec.size:
            raise ValueError(f"saved replay has {obs.shape[-1]} features, this learner {self.spec.size}")
        from phaser.rl import network

        self.target_params = network.unflatten(target)
        self.opt_state = jax.tree_util.tree_unflatten(treedef, [np.asarray(a, np.asarray(b).dtype) for a, b in zip(saved, leaves)])
        for i in range(len(obs)):
            self.replay.add(obs[i], int(state["replay/action"][i]), float(state["replay/reward"][i]),
                            state["replay/next_obs"][i], bool(state["replay/done"][i]), float(state["replay/h"][i]),
                            float(state["replay/ticks"][i]))
        t, u, owed, rsum = (float(x) for x in state["counters"])
        self.transitions, self.updates, self._owed, self.reward_sum = int(t), int(u), owed, rsum
        self.rng.bit_generator.state = ast.literal_eval(bytes(state["rng"]).decode())

    def snapshot(self, extra_stats: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """(flat params, metadata) in ``phaser train``'s checkpoint format."""
        meta = dict(self.base_meta)
        meta.update({
            "n_instances": self.n, "feature_spec": spec_metadata(self.spec), "config": self.cfg.to_dict(),
            "source": "online", "parent_version": self.parent,
            "stats": {"transitions": self.transitions, "updates": self.updates,
                      "loss": None if self.last_loss != self.last_loss else round(self.last_loss, 6),
                      "q_mean": None if self.last_q != self.last_q else round(self.last_q, 6),
                      "reward_mean": round(self.reward_sum / max(1, self.transitions), 6), **(extra_stats or {})},
        })
        return self._flatten(self.params), meta
