"""The cross-family router (``phaser.rl.families``) and the feature spec v3 it reads."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.rl.features import Encoder, FeatureSpec
from phaser.types import Job


def _block(x: np.ndarray, spec: FeatureSpec, i: int) -> dict[str, float]:
    names = [n for n, _, _ in spec.per_instance]
    w = len(names)
    return dict(zip(names, x[3 + w * i: 3 + w * (i + 1)].tolist()))


def test_v3_sees_cache_hits_and_each_instance_s_own_speed():
    a100, h100 = get_profile("a100-llama3-8b"), get_profile("h100-llama3-8b")
    view = ClusterView([a100, a100, h100])
    # instance 1 was sent a request with prefix blocks 7, 8: a request sharing them hits there only
    view.on_assign(Job("old", 0.0, 1024, prefix_ids=(7, 8), predicted_tokens=50.0), 1, 0.0)
    spec = FeatureSpec(3, 3)
    assert spec.size == 3 + 12 * 3
    x = Encoder(spec)(Job("new", 0.1, 2048, prefix_ids=(7, 8, 9, 10), predicted_tokens=50.0), view)
    b = [_block(x, spec, i) for i in range(3)]
    assert b[0]["cached_frac"] == 0.0 and b[1]["cached_frac"] == pytest.approx(0.5)
    # half the prompt cached → less to prefill there; the H100 prefills the same prompt faster than an A100
    assert b[1]["this_prefill_s"] < b[0]["this_prefill_s"]
    assert b[2]["this_prefill_s"] < b[0]["this_prefill_s"]
    assert b[2]["step_s"] < b[0]["step_s"]
    assert b[1]["outstanding"] > 0 == b[0]["outstanding"]
    # v2 is v3's first 8 numbers per instance, unchanged
    x2 = Encoder(FeatureSpec(3, 2))(Job("new", 0.1, 2048, prefix_ids=(7, 8, 9, 10), predicted_tokens=50.0), view)
    assert np.allclose(x2[3:11], x[3:11]) and np.allclose(x2[:3], x[:3])


def test_teacher_target_spreads_over_ties_only():
    from phaser.rl.families import teacher_target

    assert teacher_target([3.0, 1.0, 2.0]).tolist() == [0.0, 1.0, 0.0]
    assert teacher_target([1.0, 5.0, 1.0, 1.0000001]).tolist() == pytest.approx([1 / 3, 0.0, 1 / 3, 1 / 3])
    # the base heuristic's tie set breaks a tie, never a strict preference of the lookahead
    assert teacher_target([1.0, 5.0, 1.0, 1.0000001], prefer=[2]).tolist() == [0.0, 0.0, 1.0, 0.0]
    assert teacher_target([1.0, 5.0, 1.0, 1.0000001], prefer=[1, 2, 3]).tolist() == pytest.approx([0, 0, .5, .5])
    assert teacher_target([3.0, 1.0, 2.0], prefer=[0]).tolist() == [0.0, 1.0, 0.0]
    # without the lookahead's costs the label is the base's whole tie set, not the one its RNG drew
    assert teacher_target(None, [0, 3], 4).tolist() == [0.5, 0.0, 0.0, 0.5]


def test_the_bases_report_their_tie_sets():
    """On an idle cluster every instance is equally good to each base (dynamo-kv and llm-d draw
    one at random); the tie set is all of them. An instance with a request outstanding leaves
    the tie set of the rules that count outstanding work (llm-d reads only heartbeats)."""
    from phaser.cluster.view import ClusterView
    from phaser.engine.profiles import get_profile
    from phaser.policies import make_policy
    from phaser.types import Job

    def job(i):
        return Job(id=f"r{i}", arrival_s=0.0, prompt_tokens=200, predicted_tokens=50.0, predicted_bucket=0)

    for name in ("dynamo-kv", "least-requests", "workload-aware", "prefix-aware", "llm-d"):
        view = ClusterView([get_profile("a100-llama3-8b")] * 4)
        pol = make_policy(name, 4, 0)
        k = pol.decide(job(0), view)
        assert sorted(pol.ties) == [0, 1, 2, 3] and k in pol.ties, name
        if name != "llm-d":
            view.on_assign(job(1), 2, 0.0)
            k = pol.decide(job(2), view)
            assert 2 not in pol.ties and len(pol.ties) == 3 and k in pol.ties, name


def test_a_tiny_run_labels_fits_selects_and_writes_a_servable_checkpoint(tmp_path):
    from phaser.policies import make_policy
    from phaser.rl.families import FamiliesConfig, train_families

    cfg = FamiliesConfig(families=("paper", "heterogeneous"), rounds=2, episodes_per_family=1, labels_per_episode=30,
                         n_requests=100, eval_draws=1, eval_loads=(0.8,), updates_per_round=300)
    rep = train_families(cfg, 0, tmp_path / "ck")
    assert [r["round"] for r in rep.rounds] == [0, 1]
    assert set(rep.bases) == {"paper", "heterogeneous"}
    assert {t["teacher"] for t in rep.teachers.values()} <= {"lookahead", "base"} and set(rep.teachers) == set(rep.bases)
    labels = rep.rounds[-1]["labels"]
    assert set(labels) == {"4", "8"} and all(v > 0 for v in labels.values())
    assert labels["4"] > rep.rounds[0]["labels"]["4"]  # DAgger keeps every round's data
    # fitting beats chance on its own labels (1/4 and 1/8)
    fit = rep.rounds[-1]["fit"]
    assert fit["4"]["agreement"] > 0.4 and fit["8"]["agreement"] > 0.2
    assert {r["family"] for r in rep.selection} == {"paper", "heterogeneous"}
    # one parameter set serves 4 and 8 instances through the policy registry
    for n in (4, 8, 16):
        pol = make_policy("rl-families", n, 0, checkpoint=str(rep.checkpoint))
        assert pol.encoder.spec.version == 3 and pol.n == n


def test_a_learned_policy_breaks_exact_ties_at_random_not_by_index():
    """Identical idle instances score identically; the pick must spread over them (seeded),
    not always be the lowest index (which left 7 of 16 prefix-heavy instances unused)."""
    from phaser.cluster.view import ClusterView
    from phaser.engine.profiles import get_profile
    from phaser.rl import network
    from phaser.rl.families import SPEC_VERSION, student
    from phaser.types import Job

    import jax

    net = network.build("shared", 8, (16, 16))
    params = network.flatten(network.init_params(net, 8, jax.random.PRNGKey(0), FeatureSpec(8, SPEC_VERSION).size))
    pol = student(params, (16, 16))(8, 3)
    picks = [pol.decide(Job(id=f"r{i}", arrival_s=0.0, prompt_tokens=100, predicted_tokens=20.0, predicted_bucket=0),
                        ClusterView([get_profile("a100-llama3-8b")] * 8)) for i in range(80)]
    assert len(set(picks)) >= 6  # uniform over 8: P(fewer than 6 of 8 seen in 80 draws) < 1e-6
    again = student(params, (16, 16))(8, 3)
    assert picks == [again.decide(Job(id=f"r{i}", arrival_s=0.0, prompt_tokens=100, predicted_tokens=20.0,
                                      predicted_bucket=0), ClusterView([get_profile("a100-llama3-8b")] * 8))
                     for i in range(80)]  # seeded
