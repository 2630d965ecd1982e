"""Checkpoint store: version numbering, atomic pointer, promote / pin / rollback."""

from __future__ import annotations

import pytest

from phaser.errors import PhaserError
from phaser.versions.store import CheckpointStore


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


def _corrupt(path):
    """Flip bytes of a version's weights: its checksum no longer matches."""
    w = next(p for p in sorted(path.iterdir()) if p.suffix == ".safetensors")
    data = bytearray(w.read_bytes())
    data[-4:] = b"\xde\xad\xbe\xef"
    w.write_bytes(bytes(data))


def test_a_corrupt_current_version_falls_back_to_the_previous_good_one_and_says_so(tmp_path):
    s = CheckpointStore(tmp_path / "s")
    v1, _, _ = _publish(s)
    v2, p2, _ = _publish(s)
    s.promote(v1, "first")
    s.promote(v2, "second")
    _corrupt(p2)
    version, ckpt, notes = s.usable_current()
    assert version == v1 and ckpt.metadata["version"] == v1
    assert len(notes) == 1 and f"v{v2}" in notes[0] and "unusable" in notes[0]
    # the current version's directory is gone altogether: same fallback
    import shutil

    shutil.rmtree(p2)
    assert s.usable_current()[0] == v1


def test_an_unreadable_pointer_tries_stored_versions_newest_first_and_nothing_usable_is_none(tmp_path):
    s = CheckpointStore(tmp_path / "s")
    v1, p1, _ = _publish(s)
    v2, p2, _ = _publish(s)
    s.pointer_path.write_text("{ not json")
    version, _, notes = s.usable_current()
    assert version == v2 and "unreadable pointer" in notes[0]
    _corrupt(p1)
    _corrupt(p2)
    version, ckpt, notes = s.usable_current()
    assert (version, ckpt) == (None, None) and len(notes) == 3
    assert CheckpointStore(tmp_path / "empty").usable_current() == (None, None, [])


def test_router_and_trainer_start_on_a_store_whose_current_version_is_corrupt(tmp_path, capsys):
    from phaser.policies import make_policy
    from policy_trainer.service import build_core
    from services.policy_swap import incumbent_from

    src = "phaser/checkpoints/rl-guided/v000002"
    s = CheckpointStore(tmp_path / "s")
    s.import_checkpoint(src, "good")
    v2, p2 = s.import_checkpoint(src, "to be corrupted")
    _corrupt(p2)
    served, _ = incumbent_from(s, None, make_policy("round-robin", 4), 4)
    assert served.version == v2 - 1
    err = capsys.readouterr().err
    assert f"v{v2}" in err and f"serving v{v2 - 1} instead" in err
    core = build_core(str(s.root), 4, None, 0, publish_every_updates=100, publish_every_s=60.0, freeze=True, settle_s=1.0)
    assert core is not None and f"starting from v{v2 - 1}" in capsys.readouterr().err
    _corrupt(s.path_of(v2 - 1))
    served, _ = incumbent_from(s, None, make_policy("round-robin", 4), 4)
    assert served.version == 0 and served.policy.name == "round-robin"
    assert "serving round-robin" in capsys.readouterr().err
