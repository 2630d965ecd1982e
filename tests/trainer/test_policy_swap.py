"""Router-side hot swap without Kafka: load in the background, canary, guard, refusals."""

from __future__ import annotations

import json
import time

import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from phaser.policies import make_policy
from phaser.rl.features import FeatureSpec
from phaser.types import Job
from phaser.versions.guard import GuardConfig
from protos.messages import Completion, PolicyUpdate
from services.policy_swap import PolicySwap, Served

N = 4


def _view():
    return ClusterView([get_profile("v100-llama2-7b")] * N)


def _job(i: int, t: float = 0.0) -> Job:
    return Job(id=f"r{i}", arrival_s=t, prompt_tokens=100, predicted_tokens=50.0, predicted_bucket=0)


def _published(v, path, checksum, kind="published"):
    return PolicyUpdate(kind=kind, version=v, path=str(path), checksum=checksum, ts_s=0.0)


def _swap(**kw):
    return PolicySwap(Served(0, make_policy("round-robin", N)), N, explore=0.0, **kw)


def _wait_installed(swap, now_s=1.0, timeout=5.0):
    events = []
    deadline = time.monotonic() + timeout
    while not swap.load_finished() and time.monotonic() < deadline:
        time.sleep(0.002)
    events += swap.poll(now_s)
    return events


def test_published_version_becomes_canary_then_takes_its_share(publish_fixed):
    v, path, cs = publish_fixed(2)
    swap = _swap(guard=GuardConfig(share=0.5, min_samples=10, promote_after=20))
    view = _view()
    swap.on_update(_published(v, path, cs), 0.5)
    assert swap.decide(_job(0), view, 0.5).version == 0  # still loading: the incumbent serves, nobody waits
    events = _wait_installed(swap)
    assert [e.kind for e in events] == ["canary"] and swap.canary.version == v
    ds = [swap.decide(_job(i), view, 1.0) for i in range(1, 401)]
    by_version = {0: 0, v: 0}
    for d in ds:
        by_version[d.version] += 1
        assert d.features is not None and len(d.features) == FeatureSpec(N).size
        if d.version == v:
            assert d.instance == 2
    assert 150 < by_version[v] < 250
    assert swap.served_counts == {0: by_version[0] + 1, v: by_version[v]}


def test_tampered_version_is_refused_and_incumbent_keeps_serving(publish_fixed):
    v, path, cs = publish_fixed(1)
    meta = json.loads((path / "metadata.json").read_text())
    meta["source"] = "tampered"
    (path / "metadata.json").write_text(json.dumps(meta))
    swap = _swap()
    swap.on_update(_published(v, path, cs), 0.0)
    events = _wait_installed(swap)
    assert [e.kind for e in events] == ["refused"] and "checksum" in events[0].reason
    assert swap.canary is None and swap.incumbent.version == 0


@pytest.mark.parametrize("problem", ["missing", "wrong_instances", "checksum_mismatch"])
def test_unloadable_versions_are_refused(publish_fixed, problem, tmp_path):
    if problem == "missing":
        upd = _published(7, tmp_path / "nope", "")
    elif problem == "wrong_instances":
        v, path, cs = publish_fixed(0, n_instances=N + 1)
        upd = _published(v, path, cs)
    else:
        v, path, cs = publish_fixed(0)
        upd = _published(v, path, "sha256:" + "0" * 64)
    swap = _swap()
    swap.on_update(upd, 0.0)
    events = _wait_installed(swap)
    assert [e.kind for e in events] == ["refused"], events
    assert swap.incumbent.version == 0 and swap.canary is None


def test_bad_version_is_rolled_back_by_the_guard(publish_fixed):
    v, path, cs = publish_fixed(0)  # everything to instance 0
    swap = _swap(guard=GuardConfig(share=0.5, min_samples=20, promote_after=40))
    swap.on_update(_published(v, path, cs), 0.0)
    _wait_installed(swap, now_s=0.0)
    view = _view()
    verdicts = []
    for i in range(200):
        t = 0.1 * i
        d = swap.decide(_job(i, t), view, t)
        # the canary's pile-up on one instance makes its requests 3x slower
        e2e = 3.0 if d.version == v else 1.0
        swap.on_completion(Completion(request_id=f"r{i}", instance=d.instance, arrival_s=t, admitted_s=t,
                                      first_token_s=t, finish_s=t + e2e, ttft_s=0.1, tbt_mean_s=0.0, tbt_p99_s=0.0,
                                      tbt_max_s=0.0, e2e_s=e2e, router_wait_s=0.0, queue_wait_s=0.0, preemptions=0,
                                      prompt_tokens=100, output_tokens=10))
        verdicts += swap.poll(t)
        if verdicts:
            break
    assert [e.kind for e in verdicts] == ["rolled_back"]
    assert verdicts[0].version == v and verdicts[0].stats["to_version"] == 0.0
    assert swap.canary is None and swap.incumbent.version == 0


def test_operator_pin_overrides_and_blocks_new_publications(publish_fixed, store):
    v1, p1, c1 = publish_fixed(1)
    v2, p2, c2 = publish_fixed(2)
    swap = _swap()
    swap.on_update(_published(v1, p1, c1, kind="pinned"), 0.0)
    assert _wait_installed(swap) == [] and swap.incumbent.version == v1 and swap.pinned
    swap.on_update(_published(v2, p2, c2), 1.0)
    assert swap._loading is None and swap.canary is None  # ignored while pinned
    swap.on_update(_published(v1, p1, c1, kind="promoted"), 2.0)  # unpin
    assert not swap.pinned


def test_explore_is_bounded_and_freeze_disables_it():
    with pytest.raises(PhaserError):
        PolicySwap(Served(0, make_policy("round-robin", N)), N, explore=0.5)
    swap = PolicySwap(Served(0, make_policy("round-robin", N)), N, explore=0.2, freeze=True)
    assert swap.explore == 0.0
    swap = PolicySwap(Served(0, make_policy("round-robin", N)), N, explore=0.2, seed=3)
    view = _view()
    explored = sum(swap.decide(_job(i), view, 0.0).explored for i in range(2000))
    assert 300 < explored < 500


def _complete(swap, rid, e2e, t):
    swap.on_completion(Completion(request_id=rid, instance=0, arrival_s=t, admitted_s=t, first_token_s=t,
                                  finish_s=t + e2e, ttft_s=0.1, tbt_mean_s=0.0, tbt_p99_s=0.0, tbt_max_s=0.0, e2e_s=e2e,
                                  router_wait_s=0.0, queue_wait_s=0.0, preemptions=0, prompt_tokens=100,
                                  output_tokens=10))


def test_promoted_version_on_probation_is_rolled_back_if_it_degrades_at_full_traffic(publish_fixed, store):
    cfg = GuardConfig(share=0.2, min_samples=20, promote_after=40)
    swap = _swap(guard=cfg, store=store)
    view = _view()
    t = 0.0
    for i in range(60):  # the baseline: v0 at 1 s
        d = swap.decide(_job(i, t), view, t)
        _complete(swap, f"r{i}", 1.0, t)
        t += 0.1
    v, path, cs = publish_fixed(2)
    swap.on_update(_published(v, path, cs), t)
    _wait_installed(swap, now_s=t)
    events = []
    for i in range(60, 2000):  # canary: equal latency at 20%; at 100% it is 2x slower
        d = swap.decide(_job(i, t), view, t)
        e2e = 2.0 if (d.version == v and swap.canary is None) else 1.0
        _complete(swap, f"r{i}", e2e, t)
        events += swap.poll(t)
        t += 0.1
        if any(e.kind == "rolled_back" for e in events):
            break
    kinds = [e.kind for e in events]
    assert kinds == ["promoted", "rolled_back"], kinds
    assert "full traffic" in events[-1].reason
    assert swap.incumbent.version == 0 and swap.canary is None
    assert store.pointer().version is None  # back to the fallback: no store version is current
