"""Each policy on hand-built cluster views picks what its definition says."""

import dataclasses
import inspect

import pytest

from phaser.cluster.view import ClusterView
from phaser.policies import available, make_policy
from phaser.policies.mixing import decode_impact, mixing_penalty, penalties, prefill_impact
from phaser.types import Job

from ._fake import FakeProfile

HEURISTICS = [n for n in available() if not (n == "rl" or n.startswith("rl-"))]


def job(i, prompt=100, pred=50.0, bucket=0, prefix=()):
    return Job(id=f"r{i}", arrival_s=0.0, prompt_tokens=prompt, predicted_tokens=pred,
               predicted_bucket=bucket, prefix_ids=tuple(prefix))


def view(n=3, **kw):
    return ClusterView([FakeProfile(**kw) for _ in range(n)])


def load(v, inst, *jobs, t=0.0):
    for j in jobs:
        v.on_assign(j, inst, t)


def test_every_expected_heuristic_is_registered():
    assert set(HEURISTICS) >= {"round-robin", "random", "least-requests", "least-tokens", "power-of-two",
                               "min-min", "max-capacity", "workload-aware", "prefix-aware"}


def test_job_has_no_oracle_field():
    names = {f.name for f in dataclasses.fields(Job)}
    assert not any("output" in n for n in names)
    with pytest.raises((AttributeError, TypeError)):
        object.__setattr__(job(0), "output_tokens", 5)


def test_round_robin_and_random_cover_instances():
    v = view(3)
    rr = make_policy("round-robin", 3)
    assert [rr.decide(job(k), v) for k in range(6)] == [0, 1, 2, 0, 1, 2]
    a = [make_policy("random", 3, seed=7).decide(job(k), v) for k in range(1)]
    r1, r2 = make_policy("random", 3, seed=7), make_policy("random", 3, seed=7)
    seq = [r1.decide(job(k), v) for k in range(60)]
    assert seq == [r2.decide(job(k), v) for k in range(60)] and set(seq) == {0, 1, 2} and a[0] == seq[0]


def test_least_requests_picks_fewest_outstanding():
    v = view(3)
    load(v, 0, job(1), job(2))
    load(v, 1, job(3, prompt=5000, pred=3000))
    load(v, 2, job(4), job(5), job(6))
    assert make_policy("least-requests", 3).decide(job(9), v) == 1


def test_least_tokens_picks_fewest_tokens_left():
    v = view(3)
    load(v, 0, job(1, prompt=10, pred=10), job(2, prompt=10, pred=10))   # 40 tokens
    load(v, 1, job(3, prompt=5000, pred=3000))                            # 8000 tokens
    load(v, 2, job(4, prompt=100, pred=100))                              # 200 tokens
    assert make_policy("least-tokens", 3).decide(job(9), v) == 0


def test_ties_rotate_instead_of_piling_on_instance_zero():
    v = view(4)
    for name in ("least-requests", "least-tokens", "min-min", "max-capacity", "workload-aware"):
        p = make_policy(name, 4)
        assert sorted(p.decide(job(k), v) for k in range(4)) == [0, 1, 2, 3], name


def test_power_of_two_picks_less_loaded_of_its_two_draws():
    v = view(2)
    load(v, 0, *[job(k) for k in range(5)])
    p = make_policy("power-of-two", 2, seed=3)
    assert all(p.decide(job(100 + k), v) == 1 for k in range(20))


def test_min_min_uses_bucket_upper_bound_and_backlog():
    v = view(2)
    # instance 0: a long prefill backlog (3000 tokens = 3 s); instance 1: 2 decoding requests
    load(v, 0, job(1, prompt=3000))
    load(v, 1, job(2, prompt=10), job(3, prompt=10))
    v.advance_to(0.05)
    assert make_policy("min-min", 2).decide(job(9, prompt=10, bucket=1), v) == 1


def test_max_capacity_prefers_most_free_that_fits():
    v = view(3, kv_capacity_tokens=2000)
    load(v, 0, job(1, prompt=1500, pred=10))
    load(v, 1, job(2, prompt=200, pred=10))
    load(v, 2, job(3, prompt=900, pred=10))
    assert make_policy("max-capacity", 3).decide(job(9, prompt=100, pred=100), v) == 1


def test_mixing_prefill_impact_counts_stall_on_decoders_above_eps():
    v = view(2)
    load(v, 0, *[job(k, prompt=10, pred=1000) for k in range(5)])
    v.advance_to(1.0)  # all 5 decoding on instance 0; instance 1 idle
    busy, idle = v.instances
    assert busy.decoding == 5
    big = job(99, prompt=500)
    # fake profile: stall = max(10ms, (n+p)*1ms) - 10ms = 495 ms on each of 5 decoders
    assert prefill_impact(big, busy, 1.0) == pytest.approx(0.5 + 5 * 0.495)
    assert prefill_impact(big, idle, 1.0) == pytest.approx(0.5)
    tiny = job(98, prompt=5)  # 5 + 5 tokens stay under the 10 ms floor: no stall counted
    assert prefill_impact(tiny, busy, 1.0) == pytest.approx(0.01)  # its own prefill: one 10 ms step


def test_mixing_decode_impact_grows_with_requests_there():
    v = view(2)
    load(v, 0, *[job(k, prompt=10, pred=1000) for k in range(5)])
    v.advance_to(1.0)
    j = job(99, prompt=10, pred=100)
    # fake profile has a constant step time: decode impact = own decode only, equal
    assert decode_impact(j, v.instances[0], 1.0) == pytest.approx(decode_impact(j, v.instances[1], 1.0))

    # every decode step 10 ms + 1 ms per request
    g = ClusterView([FakeProfile(step_s=0.0, a_s=0.01), FakeProfile(step_s=0.0, a_s=0.01)])
    load(g, 0, *[job(k, prompt=10, pred=1000) for k in range(5)])
    g.advance_to(1.0)
    # own: 100 * 16 ms; inflicted: 1 ms * min(tokens left, 5 * 100)
    assert decode_impact(j, g.instances[0], 1.0) == pytest.approx(100 * 0.016 + 0.001 * 500)
    assert decode_impact(j, g.instances[1], 1.0) == pytest.approx(100 * 0.011)
    assert penalties(j, g) == pytest.approx([mixing_penalty(j, i, 1.0) for i in g.instances], rel=1e-12)


def test_workload_aware_keeps_long_prompt_away_from_decoders():
    v = view(2)
    load(v, 0, *[job(k, prompt=10, pred=1000) for k in range(8)])
    load(v, 1, job(50, prompt=10, pred=20))
    v.advance_to(0.5)
    assert make_policy("workload-aware", 2).decide(job(99, prompt=800, pred=50), v) == 1
    with pytest.raises(Exception):
        make_policy("workload-aware", 2, alpha=2.0)


def test_prefix_aware_longest_hit_within_load_limit_else_least_loaded():
    v = view(3)
    load(v, 0, job(1, prefix=(1, 2)))
    load(v, 1, job(2, prefix=(1, 2, 3)))
    p = make_policy("prefix-aware", 3)
    assert p.decide(job(9, prefix=(1, 2, 3, 4)), v) == 1
    # instance 1 overloaded beyond max(min*1.5, min+4): the hit is ignored, least tokens wins
    load(v, 1, *[job(100 + k) for k in range(6)])
    assert p.decide(job(10, prefix=(1, 2, 3, 4)), v) == 0  # instance 0 still has a 2-block hit
    assert p.decide(job(11, prefix=(77,)), v) == 2         # no hit: least tokens left


@pytest.mark.parametrize("name", HEURISTICS)
def test_decide_signature_takes_only_job_and_view(name):
    p = make_policy(name, 3, seed=1)
    assert list(inspect.signature(p.decide).parameters) == ["job", "view"]
    assert isinstance(p.decide(job(1), view(3)), int)
