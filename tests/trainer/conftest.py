"""Fixtures for the trainer tests: real checkpoints in a real store."""

from __future__ import annotations

import pytest

from policy_trainer.bench import random_params, version_metadata
from phaser.versions.store import CheckpointStore

N = 4


def fixed_choice_params(n_instances: int, choice: int):
    """An mlp whose argmax is always ``choice`` (a 'deliberately bad' policy)."""
    return random_params(n_instances, seed=choice, hidden=8, favour=choice)


def metadata(n_instances: int = N) -> dict:
    return version_metadata(n_instances, hidden=8, source="test")


@pytest.fixture
def store(tmp_path):
    return CheckpointStore(tmp_path / "store")


@pytest.fixture
def publish_fixed(store):
    """publish_fixed(choice, n_instances=N) -> (version, path, checksum)."""

    def _pub(choice: int, n_instances: int = N):
        return store.publish(fixed_choice_params(n_instances, choice), metadata(n_instances))

    return _pub
