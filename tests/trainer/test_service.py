"""TrainerCore without Kafka: joins, learns with the offline update step, publishes
loadable versions, keeps the predictor learning, and --freeze does neither."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.predictor.length import LengthPredictor
from phaser.rl.policy import RLPolicy
from policy_trainer.bench import synthetic_events
from policy_trainer.learner import OnlineLearner
from policy_trainer.service import TrainerCore
from phaser.versions.store import CheckpointStore
from policy_trainer.transitions import TransitionBuilder

SMALL = {"batch_size": 32, "learning_starts": 64, "hidden": (16, 16), "target_update_every": 10}


def _core(tmp_path, freeze=False, **kw):
    learner = OnlineLearner(4, None, seed=0, overrides=SMALL)
    builder = TransitionBuilder.for_config(learner.obs_dim, learner.cfg, settle_s=1.0)
    return TrainerCore(learner, CheckpointStore(tmp_path / "store"), builder=builder, predictor=LengthPredictor(),
                       freeze=freeze, **kw)


def _feed(core, n=400):
    for _, _, msg in synthetic_events(n, 4, seed=3):
        core.on_message(msg, now_s=100.0)


def test_learns_and_publishes_a_loadable_version(tmp_path):
    core = _core(tmp_path, publish_every_updates=20, publish_every_s=1e9)
    before = {k: v.copy() for k, v in core.learner.snapshot()[0].items()}
    _feed(core)
    updates = []
    for k in range(20):
        u = core.step(now_s=1000.0, wall_s=float(k))
        if u is not None:
            updates.append(u)
    assert core.learner.transitions == 399 and core.learner.updates >= 20
    assert updates and updates[0].kind == "published" and updates[0].version == 1
    assert updates[0].stats["updates"] >= 20
    v = core.store.load(updates[0].version)  # verified: checksum, format
    assert v.checksum == updates[0].checksum and v.metadata["source"] == "online"
    assert v.metadata["config"]["batch_size"] == 32
    assert any(not np.array_equal(before[k], v.params[k]) for k in before)  # the weights moved
    pol = RLPolicy.from_checkpoint(v, n_instances=4)  # the router can serve it
    assert pol.n == 4
    pred = LengthPredictor.from_dict(v.metadata["predictor"])  # the predictor learnt from the completions
    assert pred.to_dict() == core.predictor.to_dict()


def test_publishes_on_time_too(tmp_path):
    core = _core(tmp_path, publish_every_updates=10**6, publish_every_s=5.0)
    _feed(core)
    assert core.step(1000.0, wall_s=0.0) is None  # updates ran, but neither K nor T reached
    assert core.step(1000.0, wall_s=6.0).kind == "published"


def test_freeze_neither_learns_nor_publishes(tmp_path):
    core = _core(tmp_path, freeze=True, publish_every_updates=1, publish_every_s=0.1)
    _feed(core)
    for k in range(5):
        assert core.step(1000.0, wall_s=float(k)) is None
    assert core.learner.updates == 0 and core.store.versions() == []
    assert core.joiner.counters.joined == 400


def test_bad_publish_settings_are_user_errors(tmp_path):
    from phaser.errors import PhaserError

    with pytest.raises(PhaserError):
        _core(tmp_path, publish_every_updates=0)


def test_a_restarted_trainer_resumes_from_its_newest_version_not_the_current_one(tmp_path):
    from policy_trainer.service import build_core

    src = "phaser/checkpoints/rl-guided/v000002"
    s = CheckpointStore(tmp_path / "s")
    v1, _ = s.import_checkpoint(src, "current")
    c = s.load(v1)  # publish a copy as the trainer would: the newest version, never promoted
    v2, _, _ = s.publish(c.params, {k: v for k, v in c.metadata.items() if k not in ("checksum", "version", "format")})
    assert s.pointer().version == v1 and v2 == v1 + 1
    core = build_core(str(s.root), 4, None, 0, publish_every_updates=100, publish_every_s=60.0, freeze=True, settle_s=1.0)
    assert core.learner.parent == v2


def test_offsets_are_committed_only_past_records_whose_request_has_joined(tmp_path):
    core = _core(tmp_path)
    events = [m for _, _, m in synthetic_events(6, 4, seed=3)]
    assigns = [m for m in events if m.__class__.__name__ == "Assignment"]
    comps = [m for m in events if m.__class__.__name__ == "Completion"]
    tp_a, tp_c = ("assignments", 0), ("completions", 0)
    for k, a in enumerate(assigns):
        core.on_message(a, 100.0, (tp_a, 10 + k))
    for k, c in enumerate(comps[:-1]):  # the last request's completion has not arrived yet
        core.on_message(c, 100.0, (tp_c, 50 + k))
    last = assigns.index(next(a for a in assigns if a.request.id == comps[-1].request_id))
    assert core.commit_positions({tp_a: 10 + len(assigns), tp_c: 50 + len(comps) - 1}) == {
        tp_a: 10 + last, tp_c: 50 + len(comps) - 1}
    core.on_message(comps[-1], 100.0, (tp_c, 60))
    assert core.commit_positions({tp_a: 10 + len(assigns), tp_c: 61}) == {tp_a: 10 + len(assigns), tp_c: 61}


def test_a_restarted_trainer_continues_the_same_optimisation(tmp_path, capsys):
    """Replay, Adam's moments, the target net, counters and pending decisions survive
    a restart: the resumed learner's next update equals the uninterrupted one's."""
    import jax

    from policy_trainer.service import build_core

    core = _core(tmp_path, publish_every_updates=20, publish_every_s=1e9)
    _feed(core)
    assert any(core.step(1000.0, wall_s=float(k)) for k in range(20))
    v = core.published[-1]
    saved = core.store.load_state(v, core.store.load(v).checksum)
    assert len(saved["replay/obs"]) == core.learner.replay.size > 0

    resumed = build_core(str(core.store.root), 4, None, 0, publish_every_updates=20, publish_every_s=1e9,
                         freeze=False, settle_s=1.0)
    assert "resumed v" in capsys.readouterr().err
    a, b = core.learner, resumed.learner
    # the published weights are the trainer's weights at publish time; compare from the same point
    a.params = b.params
    assert (a.updates, a.transitions, b.replay.size) == (b.updates, b.transitions, a.replay.size)
    for x, y in zip(jax.tree_util.tree_leaves(a.opt_state), jax.tree_util.tree_leaves(b.opt_state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert resumed.builder.pending == core.builder.pending
    a._owed = b._owed = 1.0
    a.train(), b.train()
    for k, x in a._flatten(a.params).items():
        np.testing.assert_allclose(np.asarray(x), np.asarray(b._flatten(b.params)[k]), rtol=1e-6, atol=1e-7)
    # a decision re-read after the restart is not pending twice
    before = resumed.builder.pending
    _feed(resumed)
    assert resumed.builder.pending == before and resumed.builder.counters.late > 0


def test_an_unreadable_learner_state_resumes_the_weights_and_says_so(tmp_path, capsys):
    from policy_trainer.service import build_core

    core = _core(tmp_path, publish_every_updates=20, publish_every_s=1e9)
    _feed(core)
    assert any(core.step(1000.0, wall_s=float(k)) for k in range(20))
    core.store.state_path(core.published[-1]).write_bytes(b"not a zip")
    resumed = build_core(str(core.store.root), 4, None, 0, publish_every_updates=20, publish_every_s=1e9,
                         freeze=False, settle_s=1.0)
    err = capsys.readouterr().err
    assert "unreadable learner state" in err and "empty replay" in err
    assert resumed.learner.replay.size == 0 and resumed.learner.parent == core.published[-1]
