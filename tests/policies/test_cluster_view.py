import math

import pytest

from phaser.cluster.view import ClusterView
from phaser.types import Job
from protos.messages import InstanceStatus

from ._fake import FakeProfile


def job(i, prompt=100, pred=50.0, bucket=0, prefix=()):
    return Job(id=f"r{i}", arrival_s=0.0, prompt_tokens=prompt, predicted_tokens=pred,
               predicted_bucket=bucket, prefix_ids=tuple(prefix))


def test_assign_counts_prefill_then_decode_then_complete():
    v = ClusterView([FakeProfile(), FakeProfile()])
    v.on_assign(job(1, prompt=100, pred=50), 0, 0.0)
    a = v.instances[0]
    assert (a.outstanding, a.in_prefill, a.decoding) == (1, 1, 0)
    assert a.prompt_tokens_left == 100 and a.decode_tokens_left == pytest.approx(50)
    assert a.tokens_left == pytest.approx(150)
    # prefill of 100 tokens takes 0.1 s in the fake profile
    v.advance_to(0.05)
    assert a.in_prefill == 1
    v.advance_to(0.1 + 10 * 0.01)  # prefill done at 0.1, then 10 decode steps
    assert (a.in_prefill, a.decoding) == (0, 1)
    assert a.decode_buckets == [1, 0, 0]
    assert a.decode_tokens_left == pytest.approx(40)
    assert a.earliest_completion_s == pytest.approx(0.1 + 50 * 0.01)
    assert a.free_kv_tokens == pytest.approx(10_000 - 110)
    assert v.on_complete("r1", 0, 0.3)
    assert (a.outstanding, a.decoding, a.decode_buckets) == (0, 0, [0, 0, 0])
    assert a.decode_tokens_left == 0 and a.earliest_completion_s == math.inf
    assert not v.on_complete("unknown", 0, 0.3)
    assert v.instances[1].outstanding == 0


def test_prefill_is_a_fifo_pipeline():
    v = ClusterView([FakeProfile()])
    v.on_assign(job(1, prompt=100), 0, 0.0)
    v.on_assign(job(2, prompt=200), 0, 0.0)  # waits for r1: done at 0.1 + 0.2
    v.advance_to(0.15)
    assert (v.instances[0].in_prefill, v.instances[0].decoding) == (1, 1)
    v.advance_to(0.31)
    assert (v.instances[0].in_prefill, v.instances[0].decoding) == (0, 2)


def test_overdue_request_gets_extended_not_negative():
    v = ClusterView([FakeProfile()])
    v.on_assign(job(1, prompt=10, pred=20), 0, 0.0)   # prefill 0.01 s, then 20 steps
    v.advance_to(0.01 + 100 * 0.01)  # 100 steps: far past the prediction
    a = v.instances[0]
    assert a.decoding == 1
    assert a.decode_tokens_left > 0
    assert a.earliest_completion_s > v.now


def test_heartbeat_corrects_kv_and_reports_age():
    v = ClusterView([FakeProfile()])
    v.on_assign(job(1, prompt=1000), 0, 0.0)
    a = v.instances[0]
    assert a.heartbeat_age(0.0) == math.inf
    st = InstanceStatus(instance=0, ts_s=1.0, profile="fake", running_prefill=0, running_decode=0,
                        waiting=1, kv_blocks_used=0, kv_blocks_total=625, tokens_in_flight=0)
    v.on_status(st, 1.2)
    assert a.queue_len == 1
    assert a.heartbeat_age(1.5) == pytest.approx(0.5)
    assert a.free_kv_tokens == pytest.approx(10_000)  # the instance says: nothing held yet


def test_prefix_hits_leading_run_and_lru_eviction():
    v = ClusterView([FakeProfile()], prefix_capacity=3)
    v.on_assign(job(1, prefix=(1, 2, 3)), 0, 0.0)
    a = v.instances[0]
    assert a.prefix_hits((1, 2, 9)) == 2
    assert a.prefix_hits((9, 1, 2)) == 0
    v.on_assign(job(2, prefix=(7,)), 0, 0.0)   # evicts id 1 (least recently used)
    assert a.prefix_hits((1, 2, 3)) == 0
    assert a.prefix_hits((7,)) == 1


def test_long_run_bookkeeping_stays_consistent():
    """20k assignments with completions: counters return to exact values."""
    v = ClusterView([FakeProfile() for _ in range(8)])
    for k in range(20_000):
        t = k * 0.01
        v.advance_to(t)
        v.on_assign(job(k, prompt=50, pred=30), k % 8, t)
        if k >= 100:
            v.on_complete(f"r{k - 100}", (k - 100) % 8, t)
        _ = [i.tokens_left + i.free_kv_tokens + i.earliest_completion_s for i in v.instances]
    assert v.outstanding == 100
    assert sum(i.outstanding for i in v.instances) == 100
    for k in range(19_900, 20_000):
        v.on_complete(f"r{k}", k % 8, 300.0)
    for i in v.instances:
        assert (i.outstanding, i.in_prefill, i.decoding, i.prompt_tokens_left) == (0, 0, 0, 0)
        assert i.decode_tokens_left == 0 and i.free_kv_tokens == 10_000
