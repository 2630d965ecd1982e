"""Feature encoding on a hand-built view, the reward terms on hand-computed
cases, the environment's contract, and the rl-* policy factories."""

import math

import numpy as np
import pytest

from phaser.bench.scenarios import Scenario
from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from phaser.policies import make_policy
from phaser.rl.env import TICK_S, RouterEnv, reward_parts
from phaser.rl.features import FEATURE_VERSION, Encoder, FeatureSpec
from phaser.rl.training import make_sim_factory
from phaser.types import Job


def test_feature_spec_v1_layout_matches_the_paper_for_four_instances():
    spec = FeatureSpec(4, version=1)
    assert spec.size == 27 and len(spec.names()) == 27
    assert spec.names()[:3] == ["queue_len", "prompt_tokens", "pred_bucket"]
    assert spec.names()[3:9] == ["i0.prefill", "i0.decode_b0", "i0.decode_b1", "i0.decode_b2", "i0.free_kv",
                                 "i0.next_done_s"]
    assert FeatureSpec(16, version=1).size == 3 + 6 * 16


def test_feature_spec_v2_appends_prefill_backlog_and_decode_kv_per_instance():
    assert FEATURE_VERSION == 2 and FeatureSpec(4).version == 2
    spec = FeatureSpec(4)
    assert spec.size == 3 + 8 * 4
    assert spec.names()[3:11] == ["i0.prefill", "i0.decode_b0", "i0.decode_b1", "i0.decode_b2", "i0.free_kv",
                                  "i0.next_done_s", "i0.prefill_s", "i0.decode_kv"]
    assert spec.rows()[-2:] == [("i3.prefill_s", "log", 60.0), ("i3.decode_kv", "lin", 1.0)]
    # v1's rows are a prefix of each v2 instance block: only the two new numbers differ
    assert spec.per_instance_dict() != FeatureSpec(4, version=1).per_instance_dict()
    with pytest.raises(ValueError, match="unknown feature spec version"):
        FeatureSpec(4, version=4)  # v3 exists since #14 (phaser.rl.families)
    assert FeatureSpec.from_stored({"version": 1}, 8) == FeatureSpec(8, version=1)
    assert FeatureSpec.from_stored({}, 8).version == 1  # written before versions existed
    with pytest.raises(ValueError):
        FeatureSpec.from_stored({"version": 9}, 8)


def test_encoder_scales_a_hand_built_view():
    prof = get_profile("v100-llama2-7b")
    view = ClusterView([prof, prof])
    view.advance_to(0.0)
    for k in range(3):
        view.on_assign(Job(f"r{k}", 0.0, 100, predicted_tokens=300.0, predicted_bucket=1), 1, 0.0)
    view.advance_to(5.0)  # prefills are done after 5 s: three requests decoding, bucket 1
    view.router_queue_len = 1024
    enc = Encoder(FeatureSpec(2, version=1))
    x = enc(Job("new", 5.0, 1000, predicted_tokens=50.0, predicted_bucket=2), view)
    assert x.dtype == np.float32 and x.shape == (15,)
    assert x[0] == 1.0  # queue length capped at 512
    assert x[1] == pytest.approx(math.log1p(1000) / math.log1p(32768), rel=1e-6)
    assert x[2] == 1.0
    np.testing.assert_allclose(x[3:9], [0, 0, 0, 0, 1.0, 0.0])  # idle instance 0: all free, nothing to wait for
    inst = view.instances[1]
    assert x[3 + 6 + 2] == pytest.approx(math.log1p(3) / math.log1p(256), rel=1e-6)  # 3 in decode bucket 1
    assert x[3 + 6 + 4] == pytest.approx(inst.free_kv_tokens / inst.kv_capacity_tokens, rel=1e-5)
    assert 0.0 < x[3 + 6 + 5] < 1.0
    with pytest.raises(ValueError):
        Encoder(FeatureSpec(3))(Job("x", 0.0, 1), view)
    # v2 = the same v1 numbers in each instance block plus prefill backlog and decode KV (both 0 here:
    # the prefills are done, and 3 decoding requests hold well under the KV capacity)
    x2 = Encoder(FeatureSpec(2))(Job("new", 5.0, 1000, predicted_tokens=50.0, predicted_bucket=2), view)
    assert x2.shape == (19,)
    np.testing.assert_array_equal(x2[:3], x[:3])
    np.testing.assert_array_equal(x2[3:9], x[3:9])
    np.testing.assert_array_equal(x2[11:17], x[9:15])
    assert x2[9] == 0.0 and x2[10] == 0.0  # idle instance 0
    assert x2[17] == 0.0  # instance 1's prefills finished before t = 5 s
    assert x2[18] == pytest.approx(inst.decode_kv_tokens / inst.kv_capacity_tokens, rel=1e-5) and x2[18] > 0.0


def test_encoder_v2_sees_a_prefill_backlog_v1_cannot():
    prof = get_profile("v100-llama2-7b")
    view = ClusterView([prof, prof])
    view.advance_to(0.0)
    for k in range(4):  # four long prompts queue up for prefill on instance 0
        view.on_assign(Job(f"r{k}", 0.0, 4000, predicted_tokens=10.0, predicted_bucket=0), 0, 0.0)
    backlog = view.instances[0].prefill_backlog_s(0.0)
    assert backlog > 0.0
    x = Encoder(FeatureSpec(2))(Job("new", 0.0, 100), view)
    assert x[9] == pytest.approx(math.log1p(min(backlog, 60.0)) / math.log1p(60.0), rel=1e-6)
    assert x[10] == 0.0  # nothing decoding yet
    assert x[17] == 0.0  # instance 1 is idle


def test_reward_terms_hand_computed():
    # S goes 10 -> 14 over 0.05 s (2.5 ticks), 2 completions, bonus 60, regret 0.1 s = 5 ticks, w=1
    progress, bonus, mixing = reward_parts(10.0, 14.0, 0.05, 2, 60.0, 0.1 / TICK_S, 1.0)
    assert progress == pytest.approx(-0.5 * 24 * 2.5)
    assert bonus == 120.0 and mixing == pytest.approx(-5.0)


TINY = Scenario("tiny", "paper-mix", 2, "v100-llama2-7b", 10.0, 40)


@pytest.mark.parametrize("variant", ["rl-baseline", "rl-aware", "rl-guided"])
def test_env_episode_contract(variant):
    env = RouterEnv(make_sim_factory(TINY), 2, variant, allow_wait=True)
    obs = env.reset(1)
    assert obs.shape == (env.obs_dim,) == (3 + 8 * 2,) and env.n_actions == 3
    steps, done, hs = 0, False, []
    while not done:
        assert env.action_mask().all()  # WAIT allowed (nobody waited 10 s)
        obs, r, done, info = env.step(steps % 2)
        assert np.isfinite(r) and info["ticks"] >= 0
        hs.append(info["h"])
        steps += 1
    assert steps == 40  # one decision per request when nobody waits
    assert info["episode"]["n_requests"] == 40 and info["episode"]["waits"] == 0
    if variant == "rl-guided":
        assert min(hs) < 0.0 and max(hs) <= 0.0  # guidance is a non-positive regret
    else:
        assert hs == [0.0] * 40
    if variant != "rl-aware":
        assert info["episode"]["mixing"] == 0.0
    env2 = RouterEnv(make_sim_factory(TINY), 2, variant)
    env2.reset(1)
    assert not env2.action_mask()[-1]  # WAIT masked by default (as DQNConfig.allow_wait)


def test_rl_factories_refuse_wrong_variant_and_missing_checkpoint(tmp_path):
    with pytest.raises(PhaserError, match="rl-guided checkpoint"):
        make_policy("rl-aware", 4, checkpoint=str(Path_default("rl-guided")))
    with pytest.raises(PhaserError, match="no checkpoint"):
        make_policy("rl", 4, checkpoint=str(tmp_path))
    pol = make_policy("rl-guided", 4)  # the shipped default
    assert pol.name == "rl-guided" and pol.version >= 1


def Path_default(variant):
    from phaser.policies.rl import default_checkpoint

    return default_checkpoint(variant)


def test_earliest_completion_skips_requests_completed_while_in_prefill():
    """A request can complete (per the worker) before the view's prefill estimate
    says it left prefill; the lazily-deleted heap top must not be read."""
    prof = get_profile("v100-llama2-7b")
    view = ClusterView([prof])
    view.on_assign(Job("a", 0.0, 900, predicted_tokens=10.0), 0, 0.0)
    view.on_assign(Job("b", 0.0, 900, predicted_tokens=10.0), 0, 0.0)
    view.on_complete("a", 0, 0.01)  # still "in prefill" by the estimate
    inst = view.instances[0]
    assert inst.in_prefill == 1 and math.isfinite(inst.earliest_completion_s)
