"""The openai backend against real llama.cpp servers (SmolLM2-135M on the CPU;
no mock of the engine anywhere here). Assertions are on what a real engine
guarantees — first token, gaps, finish reason, usage, refusals — never on
absolute CPU latencies. Built and cached by the conftest (``engine_built``)."""

from __future__ import annotations

import asyncio

import pytest

from phaser.engine.profiles import get_profile
from protos.messages import Request
from services.backends.openai import OpenAIInstance
from services.clock import StackClock

# func_only: the first test's setup waits for the server build started at session start (cached
# later), which on a fresh machine with the other core busy can outlast any per-test limit; that
# wait has its own deadline (``engine_built``), the tests themselves 900 s
pytestmark = pytest.mark.timeout(900, func_only=True)

SMALL = "uniform?prompt=16-128&output=4-24"


async def _serve(inst: OpenAIInstance, reqs: list[Request], deadline_s: float = 300.0, on_poll=None) -> list:
    now = inst.clock.now()
    for r in reqs:
        inst.add(r.model_copy(update={"arrival_s": now}), now)
    done: list = []
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while len(done) < len(reqs):
        assert loop.time() < end, f"only {len(done)}/{len(reqs)} finished within {deadline_s}s"
        await asyncio.sleep(0.05)
        done += inst.advance(inst.clock.now())
        if on_poll is not None:
            on_poll(inst)
    return done


async def test_streamed_completions_are_timed_from_the_stream_and_counted_by_the_engine(llama_engines):
    inst = OpenAIInstance(0, llama_engines.endpoints[0], get_profile("v100-llama2-7b"), StackClock(1.0))
    await inst.start(60)
    try:
        assert inst._pool is not None and len(inst._pool) > 100  # token-accurate prompts via /tokenize
        reqs = [Request(id=f"t{i}", arrival_s=0.0, prompt_tokens=20 + 30 * i, output_tokens=12) for i in range(3)]
        done = await _serve(inst, reqs)
    finally:
        await inst.close()
    for rec in done:
        assert rec.status == "ok", rec.reason
        assert rec.output_tokens == 12  # ignore_eos: exactly max_tokens, by the engine's own usage count
        assert rec.prompt_tokens == next(r.prompt_tokens for r in reqs if r.id == rec.id)  # exact prompt length
        assert 0 < rec.ttft_s <= rec.e2e_s and rec.tbt_mean_s > 0 and rec.tbt_max_s >= rec.tbt_p99_s > 0
        assert rec.first_token_s <= rec.finish_s


async def test_heartbeats_carry_the_engines_own_running_and_waiting_counts(llama_engines):
    inst = OpenAIInstance(1, llama_engines.endpoints[1], get_profile("v100-llama2-7b"), StackClock(1.0))
    await inst.start(60)
    seen = []
    try:
        reqs = [Request(id=f"h{i}", arrival_s=0.0, prompt_tokens=24, output_tokens=48) for i in range(6)]  # 6 > 4 slots
        await _serve(inst, reqs, on_poll=lambda i: seen.append(i.status(i.clock.now())))
    finally:
        await inst.close()
    assert all(s.health == "ok" for s in seen)
    reported = [s for s in seen if s.running_decode + s.running_prefill > 0]
    assert reported, "no heartbeat showed a running request"
    assert all("running" not in s.unknown and "waiting" not in s.unknown for s in seen)  # from /metrics, not invented
    assert max(s.running_decode + s.running_prefill for s in seen) <= 4  # the server's 4 slots
    assert max(s.waiting for s in seen) >= 1  # the engine deferred what did not fit its slots


async def test_a_prompt_over_the_engines_context_is_rejected_with_the_engines_reason(llama_engines):
    inst = OpenAIInstance(0, llama_engines.endpoints[0], get_profile("v100-llama2-7b"), StackClock(1.0))
    await inst.start(60)
    try:
        (rec,) = await _serve(inst, [Request(id="too-long", arrival_s=0.0, prompt_tokens=3000, output_tokens=4)])
    finally:
        await inst.close()
    assert rec.status == "rejected" and rec.output_tokens == 0
    assert "context" in rec.reason and "3000" in rec.reason  # llama.cpp's own words
    c = rec.to_completion(policy="p", policy_version=0)
    assert c.status == "rejected"


def test_the_stack_routes_50_requests_to_two_real_engines_with_nothing_lost(engine_built):
    from services.up import UpConfig, run_up

    cap: dict = {}
    s = run_up(UpConfig(requests=50, workload=SMALL, rate=1.5, instances=2, engine="llama.cpp", time_scale=1.0,
                        trainer=False, monitor=False, drain_timeout_s=120.0, policy="least-requests"), capture=cap)
    assert (s["completed"], s["lost"], s["duplicates"], s["failed"]) == (50, 0, 0, 0)
    comps = cap["completions"]
    assert {c.instance for c in comps} == {0, 1}
    assert all(c.status == "ok" and c.ttft_s > 0 and c.output_tokens >= 4 for c in comps)
    assert any(c.tbt_mean_s > 0 for c in comps)


def test_killing_an_engine_mid_run_reroutes_its_requests_and_nothing_hangs(engine_built):
    from services.chaos import ChaosConfig, run_chaos

    (row,) = run_chaos(ChaosConfig(faults=("engine-down",), engine="llama.cpp", requests=60, workload=SMALL, rate=2.0,
                                   instances=2, time_scale=1.0, at_s=8.0, down_s=10.0, drain_timeout_s=120.0),
                       progress=lambda r: None)
    assert (row["completed"], row["lost"], row["duplicates"], row["failed"]) == (60, 0, 0, 0)
    assert row["restarts"] == 1  # the engine came back and the run went on
    assert row["rerouted"] >= 1  # at 2 req/s both engines hold a queue: the victim had requests in flight


def test_calibrate_writes_a_profile_with_its_fit_error_that_bench_accepts(llama_engines, tmp_path, capsys):
    import json

    from phaser.cli.main import main

    out = tmp_path / "engine.json"
    assert main(["calibrate", "--endpoint", llama_engines.endpoints[0], "--out", str(out), "--reps", "1",
                 "--max-prompt", "384"]) == 0
    err = capsys.readouterr().err
    assert "fit error prefill: MAPE" in err and "fit error decode: MAPE" in err
    prof = json.loads(out.read_text())
    assert prof["max_num_seqs"] == 4 and prof["max_model_len"] == 2048 and prof["chunked_prefill"] is True
    assert prof["b_s"] > 0 and prof["fit"]["probes"]["prefill"] >= 6 and prof["fit"]["probes"]["decode"] >= 6
    assert main(["bench", "--workload", "uniform?prompt=16-256&output=8-64", "--instances", "2", "--profile-file",
                 str(out), "--policies", "round-robin", "--requests", "60", "--rate", "0.5"]) == 0
