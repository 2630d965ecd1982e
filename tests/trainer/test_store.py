"""Checkpoint store: version numbering, atomic pointer, promote / pin / rollback."""

from __future__ import annotations

import pytest

from phaser.errors import PhaserError
from policy_trainer.store import CheckpointStore


import numpy as np

PARAMS = {"out.kernel": np.ones((2, 2), np.float32), "out.bias": np.zeros(2, np.float32)}
META = {"variant": "rl-guided", "arch": "mlp", "n_instances": 1, "feature_spec": {}, "config": {}}


def _publish(s):
    return s.publish(PARAMS, META)


def test_versions_promote_rollback(tmp_path):
    s = CheckpointStore(tmp_path / "store", wall=lambda: 42.0)
    assert s.versions() == [] and s.pointer().version is None
    assert _publish(s)[0] == 1
    assert _publish(s)[0] == 2
    assert _publish(s)[0] == 3
    assert s.versions() == [1, 2, 3]
    v, path, checksum = _publish(s)
    assert v == 4 and path == s.path_of(4) and checksum == s.load(4).checksum
    s.promote(1, "first")
    s.promote(2, "second")
    p = s.promote(3, "third", pin=True)
    assert (p.version, p.pinned, p.history, p.updated_unix) == (3, True, (1, 2), 42.0)
    assert s.pointer() == p  # round trip through the file
    withdrawn, p = s.rollback("bad")
    assert withdrawn == 3 and p.version == 2 and p.history == (1,) and p.pinned
    withdrawn, p = s.rollback("again", to=3)
    assert (withdrawn, p.version) == (2, 3)
    assert not s.unpin().pinned
    assert not list((tmp_path / "store").glob(".current-*"))  # no temp files left behind


def test_user_errors(tmp_path):
    s = CheckpointStore(tmp_path)
    with pytest.raises(PhaserError, match="nothing to roll back"):
        s.rollback("x")
    _publish(s)
    with pytest.raises(PhaserError, match="no version v7"):
        s.promote(7, "x")
    s.promote(1, "only")
    with pytest.raises(PhaserError, match="no earlier version"):
        s.rollback("x")
    (tmp_path / "current.json").write_text("{not json")
    with pytest.raises(PhaserError, match="unreadable pointer"):
        s.pointer()
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(PhaserError, match="not a directory"):
        CheckpointStore(f)
