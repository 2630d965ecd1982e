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
    # longer than the model's context: answered with a rejected completion, not dropped
    assert core.on_assignment(_assign(2, 3, 0.0, out=10**6 // 2, prompt=10**6 // 2)) is None
    (rej,), _ = core.step(2.0)
    assert rej.request_id == "r2" and rej.status == "rejected" and "context" in rej.reason


def _with(a: protos.Assignment, **req_update) -> protos.Assignment:
    return a.model_copy(update={"request": a.request.model_copy(update=req_update)})


def test_a_request_larger_than_the_kv_cache_or_context_is_rejected_with_a_reason():
    """Regression (fault probe): such requests were dropped silently and the
    router's view kept them outstanding forever."""
    core = WorkerCore(build_engines([0], "v100-llama2-7b", False))
    kv = get_profile("v100-llama2-7b")
    too_long = _assign(0, 0, 0.0, out=3000, prompt=3000)  # 6,000 > Llama-2's 4,096-token context
    assert core.on_assignment(too_long) is None
    ok = _assign(1, 0, 0.0, out=5)
    assert core.on_assignment(ok) is None
    comps, _ = _run(core, 30.0)
    by_id = {c.request_id: c for c in comps}
    assert by_id["r0"].status == "rejected" and str(kv.max_model_len) in by_id["r0"].reason
    assert by_id["r0"].output_tokens == 0 and by_id["r0"].ttft_s == 0.0
    assert by_id["r1"].status == "ok" and by_id["r1"].output_tokens == 5
    assert core.rejected == 1 and core.in_flight == 0
    assert core.on_assignment(too_long) == "duplicate"  # answered once


def test_clock_skew_never_yields_negative_latencies():
    """Regression (fault probe): an arrival_s ahead of the worker's clock (client
    skew) made latencies negative, failed validation and crashed the worker."""
    core = WorkerCore(build_engines([0], "v100-llama2-7b", False))
    a = _with(_assign(0, 0, 10.0, out=4), arrival_s=10.5)  # arrives "0.5 s in the future"
    assert core.on_assignment(a) is None and core.skewed == 1
    comps, _ = _run(core, 60.0)
    (c,) = comps
    assert c.status == "ok" and c.ttft_s >= 0 and c.e2e_s >= 0 and c.queue_wait_s >= 0
    protos.decode("completions", protos.encode(c))  # a valid message


def test_stale_epochs_are_fenced():
    core = WorkerCore(build_engines([0, 1], "v100-llama2-7b", False))
    first = _assign(0, 0, 0.0, out=50)
    rerouted = first.model_copy(update={"instance": 1, "epoch": 1})
    assert core.on_assignment(rerouted) is None
    assert core.on_assignment(first) == "stale"  # the epoch-0 copy arrives late: dropped
    comps, _ = _run(core, 60.0)
    assert [(c.request_id, c.instance, c.epoch) for c in comps] == [("r0", 1, 1)]


def test_a_restarted_worker_does_not_serve_completed_requests_again():
    """Regression (fault probe: 220 re-run completions after one worker restart)."""
    core = WorkerCore(build_engines([0], "v100-llama2-7b", False))
    core.mark_completed({"r0", "r1"})
    assert core.on_assignment(_assign(0, 0, 0.0), partition=0, offset=0) == "duplicate"
    assert core.on_assignment(_assign(1, 0, 0.0), partition=0, offset=1) == "duplicate"
    assert core.on_assignment(_assign(2, 0, 0.0), partition=0, offset=2) is None
    comps, _ = _run(core, 60.0)
    assert [c.request_id for c in comps] == ["r2"]
    assert core.commit_positions({0: 3}) == {0: 3}


def test_finished_ids_are_remembered_in_a_bounded_window(monkeypatch):
    import services.worker as w

    monkeypatch.setattr(w, "DONE_WINDOW", 3)
    core = WorkerCore(build_engines([0], "v100-llama2-7b", False), heartbeat_s=1e9)
    core.mark_completed([f"old{i}" for i in range(5)])
    assert list(core._done_ids) == ["old2", "old3", "old4"]
    assert core.on_assignment(_assign(0, 0, 0.0).model_copy(update={"request": _assign(0, 0, 0.0).request.model_copy(
        update={"id": "old4"})})) == "duplicate"
