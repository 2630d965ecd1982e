"""Checkpoints: bit-exact round trip, atomic versions, refusal of tampered or mismatched ones."""

import json

import jax
import numpy as np
import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from phaser.rl import network
from phaser.rl.checkpoint import check_compatible, load_checkpoint, save_checkpoint, spec_metadata, versions
from phaser.rl.dqn import DQNConfig
from phaser.rl.features import FeatureSpec
from phaser.rl.policy import RLPolicy
from phaser.types import Job


def _make(tmp_path, arch="mlp", n=4):
    cfg = DQNConfig(arch=arch, hidden=(8, 8))
    flat = network.flatten(network.init_params(network.build(arch, n, cfg.hidden), n, jax.random.PRNGKey(1)))
    meta = {"variant": "rl-guided", "arch": arch, "n_instances": n, "feature_spec": spec_metadata(FeatureSpec(n)),
            "config": cfg.to_dict(), "profile": "v100-llama2-7b", "workload": "paper-mix", "stats": {"episodes": 1}}
    return flat, save_checkpoint(tmp_path / "ck", flat, meta)


def test_round_trip_is_bit_exact_and_versioned(tmp_path):
    flat, d = _make(tmp_path)
    assert d.name == "v000001" and versions(tmp_path / "ck") == [1]
    ck = load_checkpoint(tmp_path / "ck")  # root resolves to the latest version
    assert set(ck.params) == set(flat)
    for k in flat:
        assert ck.params[k].dtype == np.float32
        assert ck.params[k].tobytes() == flat[k].tobytes()
    assert ck.metadata["stats"] == {"episodes": 1} and ck.checksum.startswith("sha256:")
    # a second save is a new version; the first is untouched; no temp dirs remain
    d2 = save_checkpoint(tmp_path / "ck", flat, {k: v for k, v in ck.metadata.items() if k not in ("checksum",)})
    assert d2.name == "v000002" and load_checkpoint(tmp_path / "ck").version == 2
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["v000001", "v000002"]


def test_tampered_weights_or_metadata_refused(tmp_path):
    _, d = _make(tmp_path)
    w = d / "weights.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01
    w.write_bytes(bytes(data))
    with pytest.raises(PhaserError, match="checksum"):
        load_checkpoint(d)
    _, d = _make(tmp_path / "b")
    meta = json.loads((d / "metadata.json").read_text())
    meta["variant"] = "rl-baseline"
    (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(PhaserError, match="checksum"):
        load_checkpoint(d)


def test_missing_or_empty_refused(tmp_path):
    with pytest.raises(PhaserError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    _, d = _make(tmp_path)
    (d / "weights.safetensors").unlink()
    with pytest.raises(PhaserError, match="missing"):
        load_checkpoint(d)


def test_mismatched_instance_count_refused_for_fixed_mlp(tmp_path):
    _, d = _make(tmp_path, "mlp", 4)
    ck = load_checkpoint(d)
    assert check_compatible(ck, 4).n_instances == 4
    with pytest.raises(PhaserError, match="trained for 4 instances"):
        check_compatible(ck, 8)
    with pytest.raises(PhaserError, match="trained for 4 instances"):
        RLPolicy.from_checkpoint(d, n_instances=16)


def test_shared_network_checkpoint_serves_other_instance_counts(tmp_path):
    _, d = _make(tmp_path, "shared", 4)
    pol = RLPolicy.from_checkpoint(d, n_instances=16)
    assert pol.n == 16 and pol.encoder.spec.size == 3 + 8 * 16


@pytest.mark.parametrize("arch", ["mlp", "shared"])
def test_v1_checkpoint_serves_v1_features(tmp_path, arch):
    # a checkpoint trained with spec v1 is encoded with v1, not the current version
    params = network.flatten(network.init_params(network.build(arch, 4, (8, 8)), 4, jax.random.PRNGKey(1), 3 + 6 * 4))
    meta = {"variant": "rl-guided", "arch": arch, "n_instances": 4, "feature_spec": spec_metadata(FeatureSpec(4, 1)),
            "config": {"hidden": [8, 8]}}
    d = save_checkpoint(tmp_path, params, meta)
    pol = RLPolicy.from_checkpoint(d, n_instances=4)
    assert pol.encoder.spec == FeatureSpec(4, version=1)
    view = ClusterView([get_profile("v100-llama2-7b")] * 4)
    view.advance_to(0.0)
    assert pol.decide(Job("a", 0.0, 100), view) in range(4) and len(pol.last_features) == 27


def test_shipped_v1_checkpoints_still_serve_v1_features():
    from phaser.policies.rl import default_checkpoint
    ck = load_checkpoint(default_checkpoint("rl-aware"))  # trained before spec v2
    assert ck.metadata["feature_spec"]["version"] == 1
    pol = RLPolicy.from_checkpoint(ck, n_instances=8)
    assert pol.encoder.spec == FeatureSpec(8, version=1) and pol.encoder.spec.size == 3 + 6 * 8


def test_changed_feature_spec_refused(tmp_path):
    _, d = _make(tmp_path)
    meta = json.loads((d / "metadata.json").read_text())
    meta["feature_spec"]["features"][1]["cap"] = 1000.0
    meta.pop("checksum")
    d2 = save_checkpoint(tmp_path / "other", load_checkpoint(d).params, meta)
    with pytest.raises(PhaserError, match="feature spec"):
        check_compatible(load_checkpoint(d2), 4)


def test_online_learner_keeps_its_warm_starts_feature_version():
    # the trainer builds transitions of the warm start's length (its RL policy publishes those);
    # from scratch it uses the current version, which is what the router publishes for heuristics
    from phaser.policies.rl import default_checkpoint
    from policy_trainer.learner import OnlineLearner

    v1 = load_checkpoint(default_checkpoint("rl-aware"))
    assert OnlineLearner(4, v1).obs_dim == 3 + 6 * 4
    assert OnlineLearner(4, None).obs_dim == FeatureSpec(4).size == 3 + 8 * 4
