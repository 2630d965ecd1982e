"""The instance engine: invariants, preemption, chunked prefill, prefix cache,
records, and the closed-form fast path against iteration-by-iteration stepping."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from phaser.engine.instance import Instance
from phaser.engine.kv_cache import PREFIX_BLOCK_TOKENS
from phaser.engine.profiles import get_profile
from phaser.errors import PhaserError
from protos.messages import Completion, InstanceStatus, Request

V100 = get_profile("v100-llama2-7b")
A100 = get_profile("a100-llama2-7b")


def small_kv(profile, blocks: int):
    """``profile`` with a KV cache of ``blocks`` blocks."""
    return dataclasses.replace(profile, kv_blocks=blocks)


def workload(n, seed=0, rate=6.0, prompt=(10, 1500), out=(1, 500), prefixes=False):
    rng = random.Random(seed)
    t = 0.0
    reqs = []
    for i in range(n):
        t += rng.expovariate(rate)
        p = rng.randint(*prompt)
        pids = None
        if prefixes:  # a few shared system prompts of 1-3 blocks, then a private block
            sys_id = rng.randrange(3)
            pids = [1000 * sys_id + k for k in range(1 + sys_id)] + [10**6 + i]
            p = max(p, (len(pids)) * PREFIX_BLOCK_TOKENS + 1)
        reqs.append(Request(id=f"r{i}", arrival_s=t, prompt_tokens=p, output_tokens=rng.randint(*out),
                            prefix_ids=pids))
    return reqs


def drive(inst, reqs, check=None, step=None):
    """Add each request at its arrival (advancing first); optionally also stop
    every ``step`` seconds to run ``check(inst)``. Returns all records."""
    recs = []
    times = sorted({r.arrival_s for r in reqs})
    if step:
        end = reqs[-1].arrival_s
        times = sorted(set(times) | {k * step for k in range(int(end / step) + 1)})
    by_t = {}
    for r in reqs:
        by_t.setdefault(r.arrival_s, []).append(r)
    for t in times:
        recs += inst.advance(t)
        if check:
            check(inst)
        for r in by_t.get(t, ()):
            inst.add(r, t)
    while not inst.idle():
        recs += inst.advance(inst.t + (step or 1.0))
        if check:
            check(inst)
    return recs


def check_invariants(inst):
    kv = inst.kv
    assert 0 <= kv.used <= kv.total
    assert kv.used + kv.cached_blocks <= kv.total
    assert sum(r.blocks for r in inst.running) == kv.used
    assert all(r.blocks == 0 for r in inst.waiting)
    ids = [r.id for r in inst.running] + [r.id for r in inst.waiting]
    assert len(ids) == len(set(ids))
    assert len(inst.running) <= inst.max_seqs
    assert inst.n_prefilling == sum(1 for r in inst.running if r.done_pf < r.target)
    for r in inst.running:
        assert r.gen < r.output
        assert r.blocks * inst.bt >= (r.prompt + r.gen - 1 if r.done_pf >= r.target else r.target)


CONFIGS = [
    dict(profile=V100),
    dict(profile=V100, chunked_prefill=True),
    dict(profile=small_kv(A100, 300)),  # heavy preemption
    dict(profile=small_kv(A100, 300), chunked_prefill=True, max_num_batched_tokens=1024),
    dict(profile=A100, max_num_seqs=4),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["v100", "v100-chunked", "tiny-kv", "tiny-kv-chunked", "4-seqs"])
def test_invariants_no_loss_no_duplicate_fcfs(cfg):
    cfg = dict(cfg)
    prof = cfg.pop("profile")
    reqs = workload(250, seed=3, rate=8.0)
    inst = Instance(0, prof, reference=True, **cfg)
    orig, steps = inst._step, []

    def checked_step(done):  # invariants after EVERY iteration
        orig(done)
        steps.append(1)
        check_invariants(inst)

    inst._step = checked_step
    recs = drive(inst, reqs, check=check_invariants, step=0.37)
    assert len(steps) == inst.iterations
    assert sorted(r.id for r in recs) == sorted(r.id for r in reqs)  # each exactly once
    want = {r.id: r for r in reqs}
    for rec in recs:
        q = want[rec.id]
        assert rec.output_tokens == q.output_tokens and rec.prompt_tokens == q.prompt_tokens
        assert q.arrival_s <= rec.admitted_s <= rec.first_token_s <= rec.finish_s
        assert rec.e2e_s == pytest.approx(rec.finish_s - q.arrival_s)
        assert 0 <= rec.tbt_mean_s <= rec.tbt_max_s + 1e-12 and rec.tbt_p99_s <= rec.tbt_max_s + 1e-12
        if q.output_tokens > 1:
            # the mean TBT is at least one iteration (the floor)
            assert rec.tbt_mean_s >= prof.floor_s - 1e-12
    assert inst.kv.used == 0 and inst.completed == len(reqs)
    # FCFS: first admissions happen in arrival order
    adm = [r.admitted_s for r in sorted(recs, key=lambda r: int(r.id[1:]))]
    assert adm == sorted(adm)
    assert sum(r.preemptions for r in recs) == inst.preemptions


def test_preemption_happens_under_kv_pressure_and_everything_completes():
    prof = small_kv(A100, 200)  # 3,200 tokens of KV
    reqs = [Request(id=f"p{i}", arrival_s=0.001 * i, prompt_tokens=400, output_tokens=600) for i in range(6)]
    inst = Instance(0, prof)
    recs = drive(inst, reqs, check=check_invariants)
    assert len(recs) == 6 and inst.preemptions > 0
    by = {r.id: r for r in recs}
    # the earliest admitted is never the victim; the latest ones are
    assert by["p0"].preemptions == 0
    assert by["p5"].preemptions >= 1
    # a preempted request's TBT shows the stall of its recompute gap
    assert by["p5"].tbt_max_s > 10 * by["p0"].tbt_max_s


def test_chunked_prefill_shortens_stalls_of_running_decodes():
    """A few long-running decodes, then a burst of long prompts: without chunking
    each 4 k prefill lands in one iteration and stalls the decodes; Sarathi-style
    chunks bound every iteration's work."""
    decodes = [Request(id=f"d{i}", arrival_s=0.0, prompt_tokens=64, output_tokens=400) for i in range(4)]
    burst = [Request(id=f"b{i}", arrival_s=1.0 + 0.01 * i, prompt_tokens=4000, output_tokens=8) for i in range(6)]
    res = {}
    for chunked in (False, True):
        inst = Instance(0, A100, chunked_prefill=chunked)
        recs = {r.id: r for r in drive(inst, decodes + burst)}
        res[chunked] = max(recs[f"d{i}"].tbt_max_s for i in range(4))
    assert res[True] < 0.5 * res[False]
    assert res[False] >= A100.prefill_time(4000)  # a whole prefill landed in one iteration


def test_prefix_cache_hits_cut_ttft():
    pids = [7, 8, 9, 10]
    first = Request(id="a", arrival_s=0.0, prompt_tokens=2100, output_tokens=5, prefix_ids=pids)
    same = Request(id="b", arrival_s=1.0, prompt_tokens=2100, output_tokens=5, prefix_ids=pids)
    other = Request(id="c", arrival_s=1.0, prompt_tokens=2100, output_tokens=5, prefix_ids=[1, 2, 3, 4])
    ttft = {}
    for second in (same, other):
        inst = Instance(0, A100)
        inst.add(first, 0.0)
        inst.advance(0.5)
        assert inst.cached_prefix_len(pids) == 4 * PREFIX_BLOCK_TOKENS
        assert inst.cached_prefix_len([7, 99, 9]) == PREFIX_BLOCK_TOKENS  # leading run only
        inst.add(second, 1.0)
        rec = inst.advance(math.inf)[0]
        ttft[second.id] = rec.ttft_s
        assert rec.cached_prompt_tokens == (2048 if second is same else 0)
    assert ttft["b"] < 0.5 * ttft["c"]


def test_prefix_cache_never_takes_blocks_from_requests():
    prof = small_kv(A100, 400)
    reqs = workload(120, seed=5, rate=10.0, prompt=(600, 1600), out=(20, 300), prefixes=True)
    inst = Instance(0, prof, reference=True)
    recs = drive(inst, reqs, check=check_invariants, step=0.21)
    assert len(recs) == 120
    assert any(r.cached_prompt_tokens > 0 for r in recs)


@pytest.mark.parametrize("cfg", CONFIGS + [dict(profile=small_kv(A100, 500), prefixes=True)],
                         ids=["v100", "v100-chunked", "tiny-kv", "tiny-kv-chunked", "4-seqs", "prefix"])
def test_fast_path_equals_reference_stepping(cfg):
    cfg = dict(cfg)
    prof = cfg.pop("profile")
    pref = cfg.pop("prefixes", False)
    reqs = workload(300, seed=11, rate=7.0, prefixes=pref)
    out = {}
    for ref in (False, True):
        inst = Instance(0, prof, reference=ref, **cfg)
        out[ref] = ({r.id: r for r in drive(inst, reqs, step=1.3)}, inst.iterations, inst.preemptions)
    fast, slow = out[False], out[True]
    assert fast[1] == slow[1] and fast[2] == slow[2]  # same iterations, same preemptions
    assert set(fast[0]) == set(slow[0]) == {r.id for r in reqs}
    for rid, a in fast[0].items():
        b = slow[0][rid]
        for f in ("admitted_s", "first_token_s", "finish_s", "tbt_mean_s", "tbt_p99_s", "tbt_max_s"):
            assert getattr(a, f) == pytest.approx(getattr(b, f), rel=1e-9, abs=1e-9), (rid, f)
        assert (a.preemptions, a.cached_prompt_tokens) == (b.preemptions, b.cached_prompt_tokens)


def test_fast_path_really_skips_iterations():
    """Decode spans: far fewer engine steps than iterations."""
    inst = Instance(0, A100)
    steps = 0
    orig = inst._step

    def counting(done):
        nonlocal steps
        steps += 1
        orig(done)

    inst._step = counting
    for i in range(8):
        inst.add(Request(id=f"x{i}", arrival_s=0.0, prompt_tokens=100, output_tokens=1000 + 100 * i), 0.0)
    recs = inst.advance(math.inf)
    assert len(recs) == 8 and inst.iterations >= 1700
    assert steps < 20


def test_single_request_timeline_matches_the_profile():
    inst = Instance(0, A100)
    inst.add(Request(id="s", arrival_s=2.0, prompt_tokens=1000, output_tokens=3), 2.0)
    rec = inst.advance(math.inf)[0]
    t1 = 2.0 + A100.prefill_time(1000)
    assert rec.first_token_s == pytest.approx(t1)
    d1 = A100.decode_step_time(1, 1001)
    d2 = A100.decode_step_time(1, 1002)
    assert rec.finish_s == pytest.approx(t1 + d1 + d2)
    assert rec.tbt_max_s == pytest.approx(d2) and rec.tbt_p99_s == pytest.approx(d2)
    assert rec.tbt_mean_s == pytest.approx((d1 + d2) / 2)
    assert rec.queue_wait_s == 0.0 and rec.ttft_s == pytest.approx(t1 - 2.0)


def test_next_event_time_is_the_next_completion_in_a_decode_span():
    inst = Instance(0, A100)
    inst.add(Request(id="a", arrival_s=0.0, prompt_tokens=50, output_tokens=300), 0.0)
    inst.add(Request(id="b", arrival_s=0.0, prompt_tokens=50, output_tokens=100), 0.0)
    assert inst.advance(0.2) == []
    te = inst.next_event_time()
    recs = inst.advance(te)
    assert [r.id for r in recs] == ["b"] and recs[0].finish_s == pytest.approx(te, abs=1e-12)
    inst.advance(math.inf)
    assert inst.next_event_time() == math.inf


def test_status_and_completion_are_valid_wire_messages():
    inst, ref = Instance(3, V100), Instance(3, V100, reference=True)
    for i in range(5):
        for x in (inst, ref):
            x.add(Request(id=f"q{i}", arrival_s=0.0, prompt_tokens=300, output_tokens=50 + i), 0.0)
    for t in (0.5, 0.9, 1.31, 1.7):  # inside a decode span: the fast engine reports it without applying it
        inst.advance(t)
        ref.advance(t)
        st = inst.status(t)
        assert isinstance(st, InstanceStatus)
        assert InstanceStatus.model_validate(st.model_dump()) == st
        assert st == ref.status(t)
    assert (st.instance, st.running_decode, st.waiting, st.profile) == (3, 5, 0, "v100-llama2-7b")
    assert st.kv_blocks_used > 5 * 300 // 16 and st.tokens_in_flight > 5 * 300
    rec = inst.advance(math.inf)[0]
    c = rec.to_completion(policy="rr", router_wait_s=0.25)
    assert isinstance(c, Completion) and c.request_id == rec.id and c.router_wait_s == 0.25
    assert c.e2e_s == rec.e2e_s and c.policy == "rr"


def test_user_errors():
    inst = Instance(0, small_kv(A100, 100))
    with pytest.raises(PhaserError, match="no output_tokens"):
        inst.add(Request(id="n", arrival_s=0, prompt_tokens=5), 0.0)
    with pytest.raises(PhaserError, match="needs .* KV tokens"):
        inst.add(Request(id="big", arrival_s=0, prompt_tokens=1500, output_tokens=500), 0.0)
    inst.add(Request(id="ok", arrival_s=0, prompt_tokens=5, output_tokens=5), 0.0)
    with pytest.raises(PhaserError, match="added twice"):
        inst.add(Request(id="ok", arrival_s=0, prompt_tokens=5, output_tokens=5), 0.0)


def test_request_added_ahead_of_the_engine_clock_joins_on_time():
    """The live worker adds what arrived, then advances: a request added at t
    while a decode span is pending must still join the first iteration at/after t."""
    ref = Instance(0, A100, reference=True)
    fast = Instance(0, A100)
    a = Request(id="a", arrival_s=0.0, prompt_tokens=100, output_tokens=400)
    b = Request(id="b", arrival_s=2.0, prompt_tokens=100, output_tokens=10)
    out = {}
    for inst in (ref, fast):
        inst.add(a, 0.0)
        inst.advance(0.1)
        inst.add(b, 2.0)  # engine clock is ~0.1: b is "in the future"
        assert inst.next_event_time() <= 2.0 + A100.floor_s + 1e-12
        out[inst.reference] = {r.id: r for r in inst.advance(math.inf)}
    assert out[False]["b"].admitted_s == pytest.approx(out[True]["b"].admitted_s, rel=1e-12)
    assert 2.0 <= out[False]["b"].admitted_s < 2.0 + 0.05
    assert out[False]["a"].finish_s == pytest.approx(out[True]["a"].finish_s, rel=1e-12)


def test_tbt_p99_is_nearest_rank_and_ignores_a_single_stall():
    """299 intervals: p99 (nearest rank) is the 3rd largest, so one prefill stall
    shows in the max but not in the p99; with 50 intervals p99 is the max."""
    for out_tokens, stall_in_p99 in ((300, False), (51, True)):
        inst = Instance(0, A100)
        inst.add(Request(id="x", arrival_s=0.0, prompt_tokens=20, output_tokens=out_tokens), 0.0)
        inst.advance(0.3)
        inst.add(Request(id="y", arrival_s=0.3, prompt_tokens=4000, output_tokens=1), 0.3)
        rec = {r.id: r for r in inst.advance(math.inf)}["x"]
        assert rec.tbt_max_s >= A100.prefill_time(4000)
        if stall_in_p99:
            assert rec.tbt_p99_s == rec.tbt_max_s
        else:
            assert rec.tbt_p99_s < 1.5 * A100.floor_s


def test_next_event_time_stays_a_lower_bound_with_a_request_added_ahead():
    inst = Instance(0, A100)
    inst.add(Request(id="a", arrival_s=0.0, prompt_tokens=100, output_tokens=400), 0.0)
    inst.advance(0.1)
    inst.add(Request(id="b", arrival_s=2.0, prompt_tokens=100, output_tokens=1), 2.0)
    inst.advance(1.0)  # a span cut at the horizon, with b still ahead
    te = inst.next_event_time()
    recs = inst.advance(math.inf)
    first = min(r.finish_s for r in recs)
    assert te <= first + 1e-12 and te <= 2.0 + A100.floor_s + 1e-12
