"""Transitions: the offline reward, rebuilt from the stream, on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from phaser.rl.env import TICK_S
from policy_trainer.joiner import Joined
from policy_trainer.transitions import TransitionBuilder
from protos.messages import Assignment, Completion, Request

D = 3


def _joined(rid, arrival, decided, first_token, finish, out, action=1, feats=None):
    req = Request(id=rid, arrival_s=arrival, prompt_tokens=10, output_tokens=out)
    a = Assignment(request=req, instance=action, policy="rl", policy_version=1, decided_s=decided, router_wait_s=0.0,
                   predicted_tokens=5.0, predicted_bucket=0, features=feats or [float(decided)] * D, action=action)
    c = Completion(request_id=rid, instance=action, arrival_s=arrival, admitted_s=arrival, first_token_s=first_token,
                   finish_s=finish, ttft_s=first_token - arrival, tbt_mean_s=0.0, tbt_p99_s=0.0, tbt_max_s=0.0,
                   e2e_s=finish - arrival, router_wait_s=decided - arrival, queue_wait_s=0.0, preemptions=0,
                   prompt_tokens=10, output_tokens=out)
    return Joined(a, c)


def test_reward_matches_hand_computation():
    b = TransitionBuilder(D, completion_bonus=60.0, reward_scale=1.0, settle_s=10.0)
    # r0 lives [0, 2): first token at 1, 11 tokens -> at t=1.5 it has produced 6 of 11
    b.add(_joined("r0", 0.0, 0.0, 1.0, 2.0, 11, action=2))
    b.add(_joined("r1", 1.5, 1.5, 3.0, 4.0, 1, action=0))
    b.add(_joined("r2", 2.5, 2.5, 3.0, 5.0, 1))
    assert b.ready(5.0) is None  # nothing settled yet
    batch = b.ready(20.0)
    assert len(batch) == 2
    # S(0) = r0: 1.0 ; S(1.5) = r0: 1 - 6/11, r1: 1.0 ; S(2.5) = r1: 1.0, r2: 1.0 (r0 finished at 2)
    s0, s15, s25 = 1.0, (1 - 6 / 11) + 1.0, 2.0
    r01 = -0.5 * (s0 + s15) * 1.5 / TICK_S
    r12 = -0.5 * (s15 + s25) * 1.0 / TICK_S + 60.0  # r0 completed in (1.5, 2.5]
    np.testing.assert_allclose(batch.reward, [r01, r12], rtol=1e-5)
    assert batch.action.tolist() == [2, 0]
    np.testing.assert_array_equal(batch.next_obs[0], batch.obs[1])
    assert b.pending == 1  # r2's decision waits for its successor


def test_out_of_order_input_gives_the_same_transitions_and_late_decisions_are_counted():
    recs = [_joined(f"r{i}", float(i), float(i), i + 0.5, i + 2.0, 10) for i in range(20)]
    a = TransitionBuilder(D, settle_s=0.0)
    b = TransitionBuilder(D, settle_s=0.0)
    for j in recs:
        a.add(j)
    for j in reversed(recs):
        b.add(j)
    ba, bb = a.ready(100.0), b.ready(100.0)
    np.testing.assert_array_equal(ba.reward, bb.reward)
    np.testing.assert_array_equal(ba.obs, bb.obs)
    b.add(_joined("old", 3.0, 3.0, 3.5, 4.0, 10))
    assert b.counters.late == 1


def test_records_without_features_only_count_for_the_reward():
    b = TransitionBuilder(D, settle_s=0.0)
    j = _joined("x", 0.0, 0.0, 0.5, 1.0, 5)
    b.add(Joined(j.assignment.model_copy(update={"features": None, "action": -1}), j.completion))
    assert b.counters.no_features == 1 and b.pending == 0


@pytest.mark.parametrize("n", [2000])
def test_memory_stays_bounded_over_a_long_stream(n):
    b = TransitionBuilder(D, settle_s=5.0)
    total = 0
    for i in range(n):
        t = i * 0.1
        b.add(_joined(f"r{i}", t, t, t + 0.2, t + 1.0, 10))
        out = b.ready(t)
        total += len(out) if out else 0
    assert total > n - 100
    assert b.pending < 60 and len(b._life) < 100
