"""The production routers' policies: in each hand-built view the cited rule must
pick a specific instance that a naive rule would not."""

from __future__ import annotations

import pytest

from phaser.cluster.view import ClusterView
from phaser.policies import make_policy
from protos.messages import InstanceStatus

from ._fake import FakeProfile
from .test_policies import job, load

BLOCKS = FakeProfile().kv_blocks_total  # 625


def view(n=3):
    return ClusterView([FakeProfile() for _ in range(n)])


def beat(v, i, waiting=0, kv_frac=0.0, t=0.0):
    v.on_status(InstanceStatus(instance=i, ts_s=t, profile="fake", running_prefill=0, running_decode=0, waiting=waiting,
                               kv_blocks_used=int(kv_frac * BLOCKS), kv_blocks_total=BLOCKS, tokens_in_flight=0), t)


def test_llm_d_default_weights_prefix_3_queue_2_kv_2():
    v = view()
    load(v, 0, job(1, prefix=(1, 2, 3, 4)))  # instance 0 holds the request's whole prefix ...
    beat(v, 0, waiting=10, kv_frac=0.9)      # ... but its queue is the longest and its KV nearly full
    beat(v, 1, waiting=0, kv_frac=0.1)
    beat(v, 2, waiting=5, kv_frac=0.5)
    p = make_policy("llm-d", 3)
    # 0: 3*1 + 2*0 + 2*0.1 = 3.2;  1: 0 + 2*1 + 2*0.9 = 3.8;  2: 0 + 2*0.5 + 2*0.5 = 2.0
    assert p.decide(job(9, prefix=(1, 2, 3, 4)), v) == 1
    assert p.last_scores == pytest.approx([3.2, 3.8, 2.0], abs=0.01)
    assert make_policy("prefix-aware", 3).decide(job(9, prefix=(1, 2, 3, 4)), v) == 0  # a cache-first rule would not
    beat(v, 0, waiting=2, kv_frac=0.3)  # a moderately loaded cache holder now wins: 3 + 2*0.8 + 2*0.7 = 6.0
    assert p.decide(job(10, prefix=(1, 2, 3, 4)), v) == 0


def test_llm_d_load_aware_keeps_the_cache_holder_despite_a_long_queue():
    v = view()
    load(v, 1, job(1, prefix=(5, 6)))
    beat(v, 0, waiting=0)
    beat(v, 1, waiting=200)  # beyond the 128 threshold: load score 0
    beat(v, 2, waiting=10)
    p = make_policy("llm-d-load-aware", 3)
    assert p.decide(job(9, prefix=(5, 6)), v) == 1  # 3*1 + 0 = 3 > 2*0.5 = 1 (instance 0)
    assert make_policy("llm-d", 3, prefix_weight=0.5).decide(job(9, prefix=(5, 6)), v) == 0  # queue-weighted: the idle one


def test_dynamo_cost_trades_uncached_prefill_blocks_against_active_decode_blocks():
    v = view(2)
    prefix = (100, 101)  # 2 prefix ids of 512 tokens: a 1,024-token prompt fully cached on instance 0
    load(v, 0, job(1, prompt=1024, prefix=prefix), job(2, prompt=1024), job(3, prompt=1024))  # ... which is busy
    active = v.instances[0].kv_used_tokens_est / 16  # 192 active blocks
    p = make_policy("dynamo-kv", 2)
    assert p.costs(job(9, prompt=1024, prefix=prefix), v) == [active, 64.0]  # 0 uncached + active; 64 uncached + 0
    assert p.decide(job(9, prompt=1024, prefix=prefix), v) == 1  # 64 uncached blocks are cheaper than 192 active
    assert make_policy("dynamo-kv", 2, overlap_weight=4.0).decide(job(9, prompt=1024, prefix=prefix), v) == 0  # 256 > 192
    assert make_policy("prefix-aware", 2).decide(job(9, prompt=1024, prefix=prefix), v) == 0  # a cache-first rule
    sampled = {make_policy("dynamo-kv", 2, temperature=5.0, seed=s).decide(job(9, prompt=1024, prefix=prefix), v)
               for s in range(40)}
    assert sampled == {0, 1}  # softmax sampling spreads


def test_sglang_cache_aware_match_rate_threshold_then_smallest_tree_and_balance_fallback():
    v = view()
    load(v, 1, job(1, prefix=(1, 2, 3)), job(2), job(3))  # 3 of 4 blocks cached on 1, which is the busiest
    load(v, 2, job(4, prefix=(50, 51, 52, 53, 54)))
    p = make_policy("sglang-cache-aware", 3)
    assert p.decide(job(9, prefix=(1, 2, 3, 4)), v) == 1  # match rate 0.75 > 0.5
    assert make_policy("least-requests", 3).decide(job(9, prefix=(1, 2, 3, 4)), v) == 0
    # a low match rate (1 of 4) does not count: the smallest tree gets it (instance 0 holds no prefix)
    assert p.decide(job(10, prefix=(50, 99, 98, 97)), v) == 0
    # imbalance beyond 32 requests: shortest queue whatever the cache says
    load(v, 1, *[job(100 + k) for k in range(40)])
    assert p.decide(job(11, prefix=(1, 2, 3, 4)), v) == 0


def test_aibrix_least_kv_cache_reads_the_heartbeat_not_the_request_count():
    v = view()
    load(v, 1, job(1), job(2), job(3))
    beat(v, 0, kv_frac=0.8)
    beat(v, 1, kv_frac=0.2)
    beat(v, 2, kv_frac=0.5)
    assert make_policy("aibrix-least-kv-cache", 3).decide(job(9), v) == 1
    assert make_policy("least-requests", 3).decide(job(9), v) != 1


def test_aibrix_least_latency_follows_observed_completion_times():
    v = view(2)
    load(v, 0, job(1), t=0.0)
    load(v, 1, job(2), t=0.0)
    v.on_complete("r1", 0, 9.0)   # instance 0 took 9 s
    v.on_complete("r2", 1, 1.0)   # instance 1 took 1 s
    load(v, 1, job(3), job(4), t=1.0)  # and now has more outstanding
    assert make_policy("aibrix-least-latency", 2).decide(job(9), v) == 1
    assert make_policy("least-requests", 2).decide(job(9), v) == 0


def test_production_stack_prefix_and_load_aware_scores():
    v = view()
    load(v, 0, job(1, prefix=(1, 2)), job(2), job(3), job(4))
    load(v, 1, job(5, prefix=(1, 2)))
    p = make_policy("production-stack-prefix", 3)
    assert p.decide(job(9, prefix=(1, 2, 3, 4)), v) == 1  # longest match (2), fewer outstanding of the two
    la = make_policy("production-stack-load-aware", 3)
    # 0: 0.5 - 0.5*4/4 = 0;  1: 0.5 - 0.5*1/4 = 0.375;  2: 0 - 0 = 0
    assert la.decide(job(9, prefix=(1, 2, 3, 4)), v) == 1
    load(v, 2, job(6, prefix=(7, 8, 9, 10)))
    # a full match on 2 (1 - 0.5*1/4 = 0.875) beats the partial ones
    assert la.decide(job(10, prefix=(7, 8, 9, 10)), v) == 2
    assert make_policy("production-stack-load-aware", 3, beta=4.0).decide(job(11, prefix=(1, 2, 3, 4)), v) != 0


def test_ray_serve_is_power_of_two_on_queue_length():
    v = view(4)
    load(v, 0, *[job(k) for k in range(5)])
    a, b = make_policy("ray-serve", 4, seed=3), make_policy("power-of-two", 4, seed=3)
    assert [a.decide(job(100 + k), v) for k in range(50)] == [b.decide(job(100 + k), v) for k in range(50)]
    assert a.name == "ray-serve"
