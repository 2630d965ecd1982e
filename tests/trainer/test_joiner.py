"""Joiner: each request joined exactly once whatever the order, with bounded memory."""

from __future__ import annotations

import random

from policy_trainer.joiner import Joiner
from protos.messages import Assignment, Completion, InstanceStatus, Request


def _a(rid: str, inst: int = 0) -> Assignment:
    req = Request(id=rid, arrival_s=1.0, prompt_tokens=10, output_tokens=5)
    return Assignment(request=req, instance=inst, policy="rl", policy_version=1, decided_s=1.0, router_wait_s=0.0,
                      predicted_tokens=5.0, predicted_bucket=0, features=[0.0], action=inst)


def _c(rid: str, inst: int = 0, e2e: float = 2.0) -> Completion:
    return Completion(request_id=rid, instance=inst, arrival_s=1.0, admitted_s=1.0, first_token_s=1.5,
                      finish_s=1.0 + e2e, ttft_s=0.5, tbt_mean_s=0.1, tbt_p99_s=0.1, tbt_max_s=0.1, e2e_s=e2e,
                      router_wait_s=0.0, queue_wait_s=0.0, preemptions=0, prompt_tokens=10, output_tokens=5)


def test_shuffled_duplicated_stream_joins_each_request_once():
    rng = random.Random(7)
    ids = [f"r{i}" for i in range(500)]
    events = [("a", r) for r in ids] + [("c", r) for r in ids]
    events += [e for e in events if rng.random() < 0.3]  # ~30% redelivered
    rng.shuffle(events)
    j = Joiner()
    out = []
    for kind, rid in events:
        got = j.add_assignment(_a(rid), 0.0) if kind == "a" else j.add_completion(_c(rid), 0.0)
        if got:
            out.append(got)
    assert sorted(x.request_id for x in out) == sorted(ids)
    assert all(x.assignment.request.id == x.completion.request_id for x in out)
    assert j.counters.joined == 500
    assert j.counters.duplicates == len(events) - 1000
    assert j.pending == 0


def test_completion_before_assignment_is_held_then_joined():
    j = Joiner()
    assert j.add_completion(_c("x", e2e=3.0), 0.0) is None
    got = j.add_assignment(_a("x"), 1.0)
    assert got is not None and got.completion.e2e_s == 3.0


def test_late_partner_after_ttl_is_counted_not_joined():
    j = Joiner(ttl_s=10.0)
    j.add_assignment(_a("x"), 0.0)
    assert j.expire(5.0) == 0
    assert j.expire(10.0) == 1
    assert j.add_completion(_c("x"), 11.0) is None
    assert (j.counters.expired, j.counters.late, j.counters.joined, j.pending) == (1, 1, 0, 0)


def test_memory_is_bounded():
    j = Joiner(max_pending=100, max_remembered=50)
    for i in range(1000):
        j.add_assignment(_a(f"r{i}"), float(i))
    assert j.pending == 100 and j.remembered == 50
    assert j.counters.evicted == 900
    # an evicted request's completion that arrives while its id is remembered is late
    assert j.add_completion(_c("r899"), 1000.0) is None
    assert j.counters.late == 1


def test_newest_status_wins():
    j = Joiner()
    mk = lambda ts, w: InstanceStatus(instance=2, ts_s=ts, profile="p", running_prefill=0, running_decode=0,
                                      waiting=w, kv_blocks_used=0, kv_blocks_total=10, tokens_in_flight=0)
    j.add_status(mk(5.0, 1))
    j.add_status(mk(4.0, 9))
    assert j.status[2].waiting == 1 and j.counters.stale_status == 1
