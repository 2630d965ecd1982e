"""Fixtures for the trainer tests: real checkpoints in a real store."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.rl.checkpoint import spec_metadata
from phaser.rl.features import FeatureSpec
from policy_trainer.store import CheckpointStore

N = 4


def fixed_choice_params(n_instances: int, choice: int, hidden: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """An mlp whose argmax is always ``choice`` (a 'deliberately bad' policy when
    every request lands on one instance): small random hidden weights, output
    bias that dominates."""
    rng = np.random.default_rng(seed)
    d = FeatureSpec(n_instances).size
    bias = np.zeros(n_instances + 1, np.float32)
    bias[choice] = 100.0
    return {
        "hidden_0.kernel": (0.01 * rng.standard_normal((d, hidden))).astype(np.float32),
        "hidden_0.bias": np.zeros(hidden, np.float32),
        "hidden_1.kernel": (0.01 * rng.standard_normal((hidden, hidden))).astype(np.float32),
        "hidden_1.bias": np.zeros(hidden, np.float32),
        "out.kernel": (0.01 * rng.standard_normal((hidden, n_instances + 1))).astype(np.float32),
        "out.bias": bias,
    }


def metadata(n_instances: int = N, hidden: int = 8) -> dict:
    return {"variant": "rl-guided", "arch": "mlp", "n_instances": n_instances,
            "feature_spec": spec_metadata(FeatureSpec(n_instances)), "config": {"hidden": [hidden, hidden]},
            "source": "test"}


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(tmp_path / "store")


@pytest.fixture
def publish_fixed(store):
    """publish_fixed(choice, n_instances=N) -> (version, path, checksum)."""

    def _pub(choice: int, n_instances: int = N):
        return store.publish(fixed_choice_params(n_instances, choice), metadata(n_instances))

    return _pub
