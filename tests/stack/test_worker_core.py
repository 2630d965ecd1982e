"""WorkerCore (no Kafka): engines fed by assignments on a given clock."""

from __future__ import annotations

import math

import protos
from phaser.engine.instance import Instance
from phaser.engine.profiles import get_profile
from services.worker import WorkerCore, build_engines


def _assign(i: int, inst: int, t: float, out: int = 20, prompt: int = 100) -> protos.Assignment:
    req = protos.Request(id=f"r{i}", arrival_s=t, prompt_tokens=prompt, output_tokens=out)
    return protos.Assignment(request=req, instance=inst, policy="round-robin", policy_version=0, decided_s=t + 0.01,
                             router_wait_s=0.01, predicted_tokens=50, predicted_bucket=0, action=-1)


def _run(core: WorkerCore, until: float):
    """Drive the core the way the Kafka loop does: wake at next_wake() until idle."""
    comps, t = [], 0.0
    while t < until:
        c, _ = core.step(t)
        comps += c
        t = core.next_wake()
        if math.isinf(t):
            break
    return comps, t


def test_every_assignment_completes_once_on_its_instance_and_not_before_finish():
    core = WorkerCore(build_engines([0, 1], "v100-llama2-7b", False), heartbeat_s=1e9)
    for i in range(10):
        assert core.on_assignment(_assign(i, i % 2, 0.1 * i), partition=i % 2, offset=i // 2) is None
    assert core.on_assignment(_assign(3, 1, 0.3)) == "duplicate"
    assert core.on_assignment(_assign(99, 5, 0.3)).startswith("instance 5")
    comps, _ = _run(core, 1e6)
    assert sorted(c.request_id for c in comps) == sorted(f"r{i}" for i in range(10))
    assert all(c.instance == int(c.request_id[1:]) % 2 and c.router_wait_s == 0.01 for c in comps)
    assert core.in_flight == 0 and core.commit_positions({0: 5, 1: 5}) == {0: 5, 1: 5}


def test_completions_match_a_directly_driven_engine():
    """Same requests, added at the decision times: the worker must reproduce the
    engine stepped one iteration at a time (it adds nothing of its own to the timing)."""
    core = WorkerCore(build_engines([0], "a100-llama3-8b", False), heartbeat_s=1e9)
    ref = Instance(0, get_profile("a100-llama3-8b"), reference=True)  # one iteration at a time
    assigns = [_assign(i, 0, 0.05 * i, out=30 + 7 * i, prompt=200 + 50 * i) for i in range(12)]
    for a in assigns:
        ref.add(a.request, a.decided_s)
    expect = {r.id: r.finish_s for r in ref.advance(math.inf)}
    comps, t = [], 0.0
    pending = list(assigns)
    while pending or core.in_flight:
        while pending and pending[0].decided_s <= t:
            core.on_assignment(pending.pop(0))
        c, _ = core.step(t)
        comps += c
        t = min(core.next_wake(), pending[0].decided_s if pending else math.inf)
    got = {c.request_id: c.finish_s for c in comps}
    assert got.keys() == expect.keys()
    assert all(abs(got[k] - expect[k]) < 1e-9 for k in got)  # closed-form spans vs single steps: float rounding only
    assert all(c.finish_s <= t for c in comps)


def test_heartbeats_and_oldest_unfinished_offset_is_committed():
    core = WorkerCore(build_engines([3], "v100-llama2-7b", False), heartbeat_s=0.5)
    core.on_assignment(_assign(0, 3, 0.0, out=400), partition=3, offset=7)
    core.on_assignment(_assign(1, 3, 0.0, out=2), partition=3, offset=8)
    _, hb = core.step(0.0)
    assert [s.instance for s in hb] == [3] and hb[0].waiting + hb[0].running_decode + hb[0].running_prefill == 2
    comps, hb = core.step(0.2)
    assert hb == []  # not due yet
    comps += core.step(2.0)[0]
    assert [c.request_id for c in comps] == ["r1"]
    assert core.commit_positions({3: 9}) == {3: 7}  # r0 still running: re-read it after a restart
    assert core.on_assignment(_assign(2, 3, 0.0, out=10**6 // 2, prompt=10**6 // 2)).startswith("refused")
