"""Failover in the functional cores (no Kafka): ``Health`` decides who is down,
``RouterCore`` re-routes and fences, ``WorkerCore`` drops revoked copies."""

from __future__ import annotations

import math

import protos
from phaser.cluster.health import Health, down_after
from services.router import build_core
from services.worker import WorkerCore, build_engines


def _req(i: int, t: float = 0.0, out: int = 50) -> protos.Request:
    return protos.Request(id=f"r{i}", arrival_s=t, prompt_tokens=10 + i, output_tokens=out)


def _hb(i: int, t: float, health: str = "ok", reason: str = "") -> protos.InstanceStatus:
    return protos.InstanceStatus(instance=i, ts_s=t, waiting=0, running_prefill=0, running_decode=0, kv_blocks_used=0,
                                 kv_blocks_total=100, profile="v100-llama2-7b", tokens_in_flight=0,
                                 health=health, reason=reason)


def _done(a: protos.Assignment, t: float, status: str = "ok") -> protos.Completion:
    r = a.request
    return protos.Completion(request_id=r.id, instance=a.instance, status=status, epoch=a.epoch, arrival_s=r.arrival_s,
                             admitted_s=t, first_token_s=t, finish_s=t, ttft_s=0.0, tbt_mean_s=0.0, tbt_p99_s=0.0,
                             tbt_max_s=0.0, e2e_s=t - r.arrival_s, router_wait_s=0.0, queue_wait_s=0.0, preemptions=0,
                             prompt_tokens=r.prompt_tokens, output_tokens=r.output_tokens or 0)


def test_down_after_counts_heartbeats_with_a_wall_clock_floor():
    assert down_after(0.5, time_scale=1.0) == 5.0     # floor: 5 wall s = 5 stack s
    assert down_after(0.5, time_scale=5.0) == 25.0    # floor in stack s at time scale 5
    assert down_after(2.0, time_scale=0.1) == 20.0    # 10 missed heartbeats dominate


def test_silence_or_an_unhealthy_report_takes_an_instance_down_and_a_healthy_heartbeat_brings_it_back():
    h = Health(3, down_after_s=5.0, started_s=0.0)
    for i in range(3):
        h.on_status(i, True, "", 1.0)
    assert h.check(5.9) == []                       # 4.9 s of silence: not yet
    h.on_status(0, True, "", 6.05)
    h.on_status(1, True, "", 6.05)
    assert h.check(6.1) == [2] and not h.live(2) and "no heartbeat" in h.down[2]
    assert h.check(7.0) == []                       # reported once
    assert h.on_status(1, False, "engine died", 7.0) == "down" and "engine died" in h.down[1]
    assert h.on_status(2, True, "", 8.0) == "up" and h.live(2)
    assert (h.went_down, h.came_back) == (2, 1)
    assert Health(2, 5.0, started_s=100.0).check(104.0) == []  # silence counts from the router's start


def test_a_late_broker_silences_everyone_together_and_takes_no_instance_down():
    """Broker lag: every heartbeat arrives late, in one burst. Silence on the router's clock alone would
    declare all three down (the tansu scale run: 1,000-2,000 false downs); the stream has not moved on."""
    h = Health(3, down_after_s=5.0, started_s=0.0)
    for i in range(3):
        h.on_status(i, True, "", 1.0, sent_s=1.0)
    assert h.check(20.0) == []                      # 19 s of silence from everyone: the broker, not the cluster
    for t in (2.0, 3.0, 4.0, 19.0):                 # the backlog arrives at 20 s, all sent long ago
        for i in range(3):
            h.on_status(i, True, "", 20.0, sent_s=t)
    assert h.check(20.1) == [] and h.went_down == 0
    # ...but an instance that stops while the others' heartbeats keep coming, late or not, goes down
    for t in (21.0, 23.0, 25.5):
        for i in (0, 1):
            h.on_status(i, True, "", t + 3.0, sent_s=t)   # 3 s of broker lag throughout
    assert h.check(28.6) == [2] and "heartbeats moved 6.5 s on" in h.down[2]


def test_worker_clocks_that_disagree_raise_no_false_alarm():
    h = Health(2, down_after_s=5.0, started_s=0.0)
    for t in [1.0 + k / 2 for k in range(17)]:      # every 0.5 s up to 9 s; instance 0's worker runs 100 s ahead
        h.on_status(0, True, "", t, sent_s=t + 100.0)
        h.on_status(1, True, "", t, sent_s=t - 30.0)  # instance 1's worker runs 30 s behind
    assert h.check(9.5) == []
    assert h.check(14.1) == []                      # both silent: nothing moved on
    h.on_status(0, True, "", 15.0, sent_s=115.0)
    assert h.check(15.1) == [1]                     # 1 silent for 6.1 s while 0's stream reached 15 s


def _core(n: int = 4, max_attempts: int = 3):
    core = build_core("round-robin", n, ["v100-llama2-7b"], seed=0, predictor="online")
    core.health = Health(n, down_after_s=5.0, started_s=0.0)
    core.max_attempts = max_attempts
    return core


def test_a_silent_instance_loses_its_in_flight_requests_to_live_ones_with_a_new_epoch_and_a_fence():
    core = _core()
    for i in range(8):
        core.on_request(_req(i))
    first = core.decide(0.0)
    assert [a.instance for a in first] == [0, 1, 2, 3, 0, 1, 2, 3]
    core.on_completion(_done(first[2], 1.0), 1.0)   # r2 finished on instance 2 before it died
    for t in (0.5, 2.0, 4.0, 6.0):
        for i in (0, 1, 3):
            core.on_status(_hb(i, t), t)
    core.check_health(6.0)                          # instance 2 silent since the start (> 5 s)
    notices = core.take_outbox()
    assert [(topic, m.request.id, m.instance, m.epoch, m.revoked) for topic, m in notices] == [
        ("assignments", "r6", 2, 1, True)]           # only what it still held; r2 had completed
    assert core.rerouted == 1 and core.view.instances[2].outstanding == 0
    again = core.decide(6.0)
    assert [(a.request.id, a.epoch) for a in again] == [("r6", 1)] and again[0].instance != 2
    for i in range(8, 12):                          # round robin would pick 2 for one of these
        core.on_request(_req(i, 6.0))
    more = core.decide(6.1)
    assert all(a.instance != 2 for a in more) and core.diverted >= 1
    assert core.requests_commit(12) == 12           # a re-routed request holds no `requests` offset
    # it comes back: routable again
    core.on_status(_hb(2, 7.0), 7.0)
    core.on_request(_req(20, 7.0))
    core.on_request(_req(21, 7.0))
    core.on_request(_req(22, 7.0))
    assert 2 in {a.instance for a in core.decide(7.0)}


def test_an_unhealthy_report_fails_over_at_once_and_attempts_are_bounded():
    core = _core(n=2, max_attempts=2)
    core.on_request(_req(0))
    (a,) = core.decide(0.0)
    core.on_status(_hb(a.instance, 0.5, "unhealthy", "circuit open"), 0.5)
    (b,) = core.decide(0.5)
    assert b.instance != a.instance and b.epoch == 1
    core.on_status(_hb(b.instance, 0.6, "unhealthy", "engine down"), 0.6)   # second routing fails too
    out = [m for topic, m in core.take_outbox() if topic == "completions"]
    assert len(out) == 1 and out[0].status == "error" and "routed 2 times" in out[0].reason
    assert core.failed == 1 and not core.queue and not core.inflight
    assert core.decide(0.7) == []


def test_with_every_instance_down_requests_wait_rather_than_fail():
    core = _core(n=2)
    core.on_status(_hb(0, 0.1, "unhealthy"), 0.1)
    core.on_status(_hb(1, 0.1, "unhealthy"), 0.1)
    core.on_request(_req(0))
    assert core.decide(0.2) == [] and len(core.queue) == 1
    core.on_status(_hb(1, 0.3), 0.3)
    assert [a.instance for a in core.decide(0.4)] == [1]


def test_a_stale_copy_that_answers_first_stands_and_the_new_copy_is_revoked():
    core = _core(n=2)
    core.on_request(_req(0))
    (a,) = core.decide(0.0)
    core.on_status(_hb(a.instance, 0.5, "unhealthy"), 0.5)
    core.take_outbox()
    (b,) = core.decide(0.5)
    core.on_completion(_done(a, 0.6), 0.6)          # the old copy finished after all
    (topic, notice), = core.take_outbox()
    assert topic == "assignments" and notice.revoked and notice.instance == b.instance and notice.epoch == 2
    assert core.stale_answers == 1 and core.view.outstanding == 0 and not core.inflight


def _assign(rid: str, inst: int, t: float, epoch: int = 0, revoked: bool = False) -> protos.Assignment:
    req = protos.Request(id=rid, arrival_s=t, prompt_tokens=100, output_tokens=40)
    return protos.Assignment(request=req, instance=inst, policy="round-robin", policy_version=0, decided_s=t,
                             router_wait_s=0.0, predicted_tokens=40, predicted_bucket=0, action=-1, epoch=epoch,
                             revoked=revoked)


def _drain(core: WorkerCore) -> list:
    out, t = [], 0.0
    while True:
        c, _ = core.step(t)
        out += c
        t = core.next_wake()
        if math.isinf(t) or not core.in_flight:
            c, _ = core.step(max(t, 1e6) if not math.isinf(t) else 1e6)
            return out + c


def test_a_worker_runs_out_a_revoked_copy_without_answering_and_drops_older_epochs():
    core = WorkerCore(build_engines([0, 1], "v100-llama2-7b", False), heartbeat_s=1e9)
    assert core.on_assignment(_assign("a", 0, 0.0), 0, 0) is None
    assert core.on_assignment(_assign("b", 1, 0.0), 1, 0) is None
    assert core.on_assignment(_assign("a", 0, 0.1, epoch=1, revoked=True), 0, 1) == "revoked"
    assert core.commit_positions({0: 2, 1: 1}) == {0: 2, 1: 0}  # the revoked copy holds no offset
    assert core.on_assignment(_assign("c", 0, 0.2, epoch=2, revoked=True), 0, 2) == "revoked"  # not held yet
    assert core.on_assignment(_assign("c", 0, 0.2, epoch=1), 0, 3) == "stale"
    got = _drain(core)
    assert [c.request_id for c in got] == ["b"] and core.stale == 2


def test_a_request_re_routed_back_to_the_same_worker_is_served_once_under_the_new_epoch():
    core = WorkerCore(build_engines([0, 1], "v100-llama2-7b", False), heartbeat_s=1e9)
    core.on_assignment(_assign("a", 0, 0.0), 0, 0)
    core.on_assignment(_assign("a", 0, 0.1, epoch=1, revoked=True), 0, 1)
    assert core.on_assignment(_assign("a", 1, 0.1, epoch=1), 1, 0) == "duplicate"  # the running copy adopts it
    got = _drain(core)
    assert [(c.request_id, c.epoch) for c in got] == [("a", 1)]
