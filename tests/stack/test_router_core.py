"""RouterCore: the router's functional core (no Kafka): dedupe, FCFS, WAIT and
re-ask at the tick, never reading the oracle."""

from __future__ import annotations

import protos
from services.router import ROUTER_TICK_S, build_core


def _req(i: int, t: float = 0.0, out: int = 50) -> protos.Request:
    return protos.Request(id=f"r{i}", arrival_s=t, prompt_tokens=10 + i, output_tokens=out)


def test_round_robin_routes_in_order_and_dedupes():
    core = build_core("round-robin", 3, ["v100-llama2-7b"], seed=0, predictor="online")
    assert core.on_request(_req(0)) and core.on_request(_req(1))
    assert not core.on_request(_req(0))  # same id again: ignored
    core.on_request(_req(2))
    core.on_request(_req(3))
    out = core.decide(1.0)
    assert [(a.request.id, a.instance) for a in out] == [("r0", 0), ("r1", 1), ("r2", 2), ("r3", 0)]
    assert core.duplicates == 1 and not core.queue
    assert all(a.router_wait_s == 1.0 and a.decided_s == 1.0 and a.policy == "round-robin" for a in out)
    # a heuristic computes no features: the router records the RL state it saw and the action taken,
    # so the trainer can learn off-policy from it (current feature spec v2: 3 global + 8 per instance)
    assert all(a.action == a.instance and len(a.features) == 3 + 8 * 3 for a in out)
    assert out[0].features[0] > out[3].features[0]  # router queue length shrinks as the queue drains
    assert core.view.outstanding == 4


class _WaitTwice:
    """A policy that waits twice, then picks instance 1; records what it saw."""

    name, version = "wait-twice", 3

    def __init__(self):
        self.calls = []

    def decide(self, job, view):
        self.calls.append((job.id, view.now, view.router_queue_len))
        assert not hasattr(job, "output_tokens")  # the oracle never reaches a policy
        return 1 if len(self.calls) > 2 else None


def test_wait_keeps_the_head_and_reasks_only_at_the_next_tick():
    core = build_core("round-robin", 2, ["v100-llama2-7b"], seed=0, predictor="mean")
    core.policy = _WaitTwice()
    core.on_request(_req(0, t=0.0))
    core.on_request(_req(1, t=0.0))
    assert core.decide(0.0) == [] and core.next_wake() == ROUTER_TICK_S
    assert core.decide(ROUTER_TICK_S / 2) == []  # before the tick: not re-asked
    assert len(core.policy.calls) == 1
    assert core.decide(ROUTER_TICK_S) == []
    out = core.decide(2 * ROUTER_TICK_S)
    assert [a.request.id for a in out] == ["r0", "r1"]  # head first, FCFS kept
    assert out[0].policy_version == 3 and abs(out[0].router_wait_s - 2 * ROUTER_TICK_S) < 1e-12
    assert [c[2] for c in core.policy.calls] == [2, 2, 2, 1]


def test_completions_train_the_predictor_and_free_the_view():
    core = build_core("round-robin", 1, ["v100-llama2-7b"], seed=0, predictor="online")
    core.on_request(_req(0))
    [a] = core.decide(0.5)
    c = protos.Completion(request_id="r0", instance=0, arrival_s=0, admitted_s=0.5, first_token_s=0.6, finish_s=2,
                          ttft_s=0.6, tbt_mean_s=0.03, tbt_p99_s=0.03, tbt_max_s=0.03, e2e_s=2, router_wait_s=0.5,
                          queue_wait_s=0, preemptions=0, prompt_tokens=10, output_tokens=3000, task="t")
    before = core.predictor.predict(_req(0))[0]
    core.on_completion(c, 2.0)
    assert core.view.outstanding == 0
    assert core.predictor.predict(_req(0))[0] > before
    assert core.requests_commit(7) == 7


def test_dedupe_memory_is_bounded(monkeypatch):
    import services.router as router

    monkeypatch.setattr(router, "DEDUPE_WINDOW", 3)
    core = build_core("round-robin", 1, ["v100-llama2-7b"], seed=0, predictor="mean")
    for i in range(5):
        assert core.on_request(_req(i))
    assert list(core.seen) == ["r2", "r3", "r4"]
    assert not core.on_request(_req(4)) and core.on_request(_req(0))  # r0 fell out of the window


def test_the_router_plans_with_the_profiles_the_twin_fitted():
    import pytest

    from phaser.errors import PhaserError

    core = build_core("workload-aware", 4, ["a100-llama3-8b"], seed=0, predictor="online")
    before = core.view.instances[2].profile.prefill_time(1000)
    assert core.adopt_profiles(["a100-llama3-8b"] * 2 + ["a100-llama3-8b@x1.6"] * 2)
    assert core.view.instances[2].profile.prefill_time(1000) == pytest.approx(1.6 * before)
    assert core.view.instances[0].profile.name == "a100-llama3-8b"
    with pytest.raises(PhaserError, match="3 profiles for 4 instances"):
        core.adopt_profiles(["a100-llama3-8b"] * 3)
    with pytest.raises(PhaserError, match="no-such"):
        core.adopt_profiles(["no-such-gpu"] * 4)
    assert core.view.instances[2].profile.name == "a100-llama3-8b@x1.6"  # a refused list changes nothing
