"""The learning router: features, simulator environment, Q-network, Double DQN
with HuRL guidance, checkpoints and the ``RLPolicy`` that serves a checkpoint.
Imported lazily by ``phaser.policies.rl`` so heuristic-only users never pay for JAX."""
