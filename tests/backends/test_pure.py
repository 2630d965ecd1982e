"""The openai backend's pure parts: telemetry mapping, stream timing, circuit
breaker, prompt synthesis. No engine here (the real one is in test_llamacpp.py)."""

from __future__ import annotations

import pytest

from phaser.backends import prompts
from phaser.backends.circuit import CircuitBreaker
from phaser.backends.stream import StreamTimer
from phaser.backends.telemetry import from_metrics, merge_llamacpp_slots, parse_metrics, status_fields

VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 5.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25
"""


def test_vllm_metrics_map_to_status_fields_and_the_rest_is_said_unknown():
    t = from_metrics(parse_metrics(VLLM))
    assert (t.engine, t.running, t.waiting, t.kv_frac) == ("vllm", 3, 5, 0.25)
    fields, unknown = status_fields(t, kv_blocks_total=1000, inflight=9)
    assert fields["waiting"] == 5 and fields["kv_blocks_used"] == 250 and fields["running_decode"] == 3
    assert set(unknown) == {"running_prefill", "tokens_in_flight"}  # vLLM does not split prefill from decode


def test_an_engine_with_no_known_metric_reports_everything_unknown_but_what_the_worker_counts():
    t = from_metrics(parse_metrics("# TYPE foo gauge\nfoo 1\n"))
    fields, unknown = status_fields(t, 100, inflight=2)
    assert t.engine is None and fields["running_decode"] == 2
    assert {"running", "waiting", "kv_blocks_used"} <= set(unknown)


def test_llamacpp_slots_split_prefill_from_decode_and_give_kv_usage():
    t = from_metrics(parse_metrics("# TYPE llamacpp:requests_processing gauge\nllamacpp:requests_processing 2\n"
                                   "# TYPE llamacpp:requests_deferred gauge\nllamacpp:requests_deferred 1\n"))
    slots = [{"id": 0, "n_ctx": 1000, "is_processing": True, "n_prompt_tokens": 100, "next_token": [{"n_decoded": 0}]},
             {"id": 1, "n_ctx": 1000, "is_processing": True, "n_prompt_tokens": 400, "next_token": [{"n_decoded": 100}]},
             {"id": 2, "n_ctx": 1000, "is_processing": False}]
    t = merge_llamacpp_slots(t, slots)
    assert (t.running, t.running_prefill, t.waiting, t.tokens_in_flight) == (2, 1, 1, 500)
    assert t.kv_frac == pytest.approx(500 / 3000)


def test_stream_timer_gives_the_simulators_record():
    s = StreamTimer("r", 1, "chat", arrival_s=10.0, sent_s=10.5, prompt_tokens=32)
    for t in (11.0, 11.1, 11.3, 11.4):
        s.token(t)
    s.usage = {"prompt_tokens": 33, "completion_tokens": 4}
    s.timings = {"prompt_ms": 200.0}
    r = s.record(11.45)
    assert r.ttft_s == pytest.approx(1.0) and r.e2e_s == pytest.approx(1.45)
    assert r.tbt_mean_s == pytest.approx(0.4 / 3) and r.tbt_max_s == pytest.approx(0.2)
    assert r.admitted_s == pytest.approx(10.8) and r.queue_wait_s == pytest.approx(0.3)
    assert (r.prompt_tokens, r.output_tokens, r.status) == (33, 4, "ok")
    c = r.to_completion(policy="p", policy_version=0, router_wait_s=0.0)
    assert c.status == "ok" and c.output_tokens == 4


def test_a_refused_request_is_a_rejected_record_with_the_reason():
    s = StreamTimer("r", 0, None, 5.0, 5.0, 10_000)
    r = s.record(5.2, status="rejected", reason="engine refused it: HTTP 400: exceeds context")
    c = r.to_completion(policy="p", policy_version=0)
    assert (c.status, c.output_tokens) == ("rejected", 0) and "exceeds context" in c.reason


def test_circuit_opens_after_n_failures_probes_once_then_closes():
    b = CircuitBreaker(failure_threshold=2, open_s=5.0)
    b.failure(0.0, "refused")
    assert b.healthy
    b.failure(1.0, "refused")
    assert not b.healthy and not b.allow(2.0)
    assert b.allow(6.5) and b.state == "half-open" and not b.allow(6.6)  # one probe at a time
    b.failure(7.0, "still down")
    assert b.state == "open" and b.opens == 1 and not b.allow(8.0)
    assert b.allow(12.1)
    b.success()
    assert b.healthy and b.failures == 0


def test_prompts_are_exact_distinct_and_share_exactly_the_shared_blocks():
    pool = list(range(1000, 1300))
    a = prompts.token_prompt("a", 100, pool, prefix_ids=[7, 8])
    b = prompts.token_prompt("b", 100, pool, prefix_ids=[7, 8])
    c = prompts.token_prompt("c", 100, pool)
    assert len(a) == len(b) == len(c) == 100 and set(a) <= set(pool)
    assert a[:32] == b[:32] and a[32:] != b[32:] and c[:32] != a[:32]
    assert prompts.token_prompt("a", 100, pool, prefix_ids=[7, 8]) == a  # reproducible
    assert len(prompts.text_prompt("x", 50).split()) == 50


def test_the_fit_recovers_a_known_profile_and_reports_error_per_group():
    import numpy as np

    from phaser.engine.fit import Probe, fit, predict, prefill_iterations
    from phaser.engine.profiles import get_profile

    p = get_profile("a100-llama3-8b")
    true = {"floor_s": p.floor_s, "a_s": p.a_s, "b_s": p.b_s, "c_s": p.c_s, "d_s": p.d_s}
    rng = np.random.default_rng(0)
    probes = [Probe(prefill_iterations(n, 8192), 0.0, "prefill") for n in (16, 64, 256, 1024, 2048, 4096, 8000)]
    probes += [Probe(((float(b), 0.0, b * kv),), 0.0, "decode") for b in (1, 8, 32, 128, 256) for kv in (200, 2000)]
    probes = [Probe(q.iterations, predict(true, q) * (1 + rng.normal(0, 0.01)), q.group) for q in probes]
    res = fit(probes)
    assert res.mape["all"] < 0.02 and set(res.mape) == {"prefill", "decode", "all"}
    for k in ("floor_s", "b_s", "d_s"):  # the terms these probes pin down
        assert abs(res.coef[k] / true[k] - 1) < 0.1, (k, res.coef[k], true[k])


def test_a_profile_file_is_accepted_where_a_name_is_and_a_bad_one_is_one_line(tmp_path):
    import json

    from phaser.engine.instance import Instance
    from phaser.engine.profiles import get_profile, profile_to_dict
    from phaser.errors import PhaserError

    d = profile_to_dict(get_profile("a100-llama2-7b"))
    d.update(name="mine", kv_blocks=100, chunked_prefill=True, max_num_batched_tokens=1024)
    f = tmp_path / "p.json"
    f.write_text(json.dumps(d))
    prof = get_profile(str(f))
    assert prof.name == "mine" and prof.kv_blocks_total == 100
    inst = Instance(0, prof)
    assert inst.chunked and inst.budget == 1024  # the engine's own scheduler, whatever the flag says
    for bad, why in (("{", "not JSON"), (json.dumps({"name": "x"}), "lacks"), (json.dumps({**d, "b_s": -1}), "b_s")):
        f.write_text(bad)
        with pytest.raises(PhaserError, match=why):
            get_profile(str(f))
    with pytest.raises(PhaserError, match="cannot read"):
        get_profile(str(tmp_path / "missing.json"))


def test_worker_cli_mistakes_are_one_line_exit_2(capsys):
    from phaser.cli.main import main

    assert main(["worker", "--backend", "openai", "--instances", "0-1", "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "one --endpoint per hosted instance" in capsys.readouterr().err
    assert main(["worker", "--backend", "openai", "--instances", "0", "--endpoint", "ftp://x"]) == 2
    assert "not an http(s) URL" in capsys.readouterr().err
    assert main(["worker", "--backend", "gpu", "--instances", "0"]) == 2
    assert "unknown backend" in capsys.readouterr().err
    assert main(["up", "--backend", "openai", "--instances", "2", "--endpoint", "http://127.0.0.1:9"]) == 2
    assert "one --endpoint per instance" in capsys.readouterr().err


def test_an_engine_down_at_start_is_one_line_exit_2(capsys):
    from phaser.cli.main import main
    from services.broker import free_port

    port = free_port()  # nothing listens there
    assert main(["worker", "--backend", "openai", "--instances", "0", "--endpoint", f"http://127.0.0.1:{port}",
                 "--start-deadline-s", "1", "--bootstrap", "127.0.0.1:1"]) == 2
    assert "not reachable within 1s" in capsys.readouterr().err
