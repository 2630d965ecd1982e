"""The monitor: rates from record timestamps, lag from committed vs seen
offsets, rolling percentiles; and a snapshot of a real run."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import uuid

import protos
from load_generator.registry import load_workload
from services.kafka import Topics
from services.monitor import MonitorCore, render_plain, run_monitor


def _completion(i: int, e2e: float) -> bytes:
    return protos.encode(protos.Completion(
        request_id=f"r{i}", instance=0, arrival_s=0, admitted_s=0, first_token_s=0.1, finish_s=e2e, ttft_s=0.1,
        tbt_mean_s=0.03, tbt_p99_s=0.03, tbt_max_s=0.03, e2e_s=e2e, router_wait_s=0.01, queue_wait_s=0,
        preemptions=0, prompt_tokens=5, output_tokens=5))


def test_core_rates_lag_and_percentiles():
    core = MonitorCore(rate_window_s=5.0)
    for i in range(100):
        core.on_record("completions", 0, i, ts_wall=90.0 + i * 0.1, value=_completion(i, e2e=float(i + 1)))
    for i in range(10):
        core.on_record("requests", 0, i, ts_wall=50.0, value=b"{}")  # old: outside the rate window
    core.on_record("completions", 0, 100, ts_wall=99.95, value=b"garbage")  # counted, not a latency
    snap = core.snapshot(100.0, {"phaser-router": {("requests", 0): 4, ("completions", 0): 101},
                                 "phaser-worker": {("assignments", 0): 0}, "phaser-trainer": {}})
    assert snap.rates["requests"] == 0.0
    assert snap.rates["completions"] == 51 / 5.0  # timestamps 95.0 .. 99.95
    assert snap.lag == {"phaser-router": 6, "phaser-worker": 0, "phaser-trainer": None}  # trainer never committed
    assert snap.lag_by_topic["phaser-router"] == {"requests": 6, "completions": 0}
    assert snap.completions == 100
    assert snap.latency["e2e_s"]["p50"] == 50.5 and abs(snap.latency["e2e_s"]["p99"] - 99.01) < 1e-9
    plain = render_plain(snap)
    assert "completions=100" in plain and "phaser-trainer=-" in plain and "phaser-router=6" in plain
    core.on_record("instance-status", 0, 499, ts_wall=99.0, value=b"{}")
    # router replicas: `phaser-router` commits only `requests`; topics it never commits are not its lag
    replicas = core.snapshot(100.0, {"phaser-router": {("requests", 0): 4}})
    assert replicas.lag == {"phaser-router": 6} and replicas.lag_by_topic["phaser-router"] == {"requests": 6}


async def test_once_snapshot_of_a_finished_run(bare_broker, stack_runner):
    topics = Topics(f"t{uuid.uuid4().hex[:8]}-")
    reqs = load_workload("paper-mix", n=60, seed=2)
    await stack_runner(bare_broker.bootstrap, reqs, instances=2, profile="v100-llama2-7b", time_scale=100.0, topics=topics)
    out = io.StringIO()
    snap = await run_monitor(bare_broker.bootstrap, topics, once=True, out=out)
    assert snap.totals["requests"] == 60 and snap.totals["assignments"] == 60 and snap.completions == 60
    # both committed everything they had read on exit (heartbeats may still be arriving)
    assert snap.lag_by_topic["phaser-router"]["requests"] == 0 and snap.lag["phaser-worker"] == 0
    assert snap.lag["phaser-trainer"] is None  # no trainer ran: absent, not the whole topic
    assert "phaser-trainer=-" in out.getvalue()
    assert set(snap.latency) == {"ttft_s", "tbt_mean_s", "e2e_s", "router_wait_s"}
    assert out.getvalue().startswith("rate requests=")


def _monitor(bootstrap: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phaser.cli.main", "monitor", "--bootstrap", bootstrap, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_monitor_says_when_its_topics_do_not_exist():
    """tansu only: a fresh broker of its own (the point is an empty one)."""
    from services.broker import EmbeddedBroker, free_port

    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        r = _monitor(b.bootstrap, "--topic-prefix", "nobody-", "--once")
        assert r.returncode == 2, r
        assert "none of phaser's topics exist" in r.stderr and "nobody-" in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        r = _monitor(b.bootstrap, "--topic-prefix", "nobody-", "--once")  # and looking did not create them
        assert r.returncode == 2


def test_monitor_exits_with_one_line_when_the_broker_goes_away():
    """tansu only: the broker is stopped under a live monitor."""
    from services.broker import EmbeddedBroker, free_port
    from services.kafka import ensure_topics

    b = EmbeddedBroker(port=free_port(), schemas=False).start()
    try:
        asyncio.run(ensure_topics(b.bootstrap, 2, Topics("gone-")))
        p = subprocess.Popen([sys.executable, "-m", "phaser.cli.main", "monitor", "--bootstrap", b.bootstrap,
                              "--topic-prefix", "gone-", "--interval", "0.5", "--reconnect-s", "3"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first = p.stdout.readline()  # a first snapshot: it is running
        assert first.startswith("rate "), first
    finally:
        b.stop()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 2, (p.returncode, err)
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "Unclosed" not in err, err
    assert lines[0].startswith("monitor: lost the broker") and lines[-1].startswith("error: the broker at"), lines


def test_core_tracks_instances_and_policy_versions():
    core = MonitorCore()
    st = protos.InstanceStatus(instance=1, ts_s=1.0, profile="p", running_prefill=1, running_decode=3, waiting=2,
                               kv_blocks_used=25, kv_blocks_total=100, tokens_in_flight=400)
    core.on_record("instance-status", 0, 0, 1.0, protos.encode(st))
    for k, (kind, v, stats) in enumerate([("promoted", 3, {}), ("canary", 4, {}), ("rolled_back", 4, {"to_version": 3.0})]):
        u = protos.PolicyUpdate(kind=kind, version=v, ts_s=float(k), stats=stats, reason="guard" if kind == "rolled_back" else "")
        core.on_record("policy-updates", 0, k, 1.0, protos.encode(u))
    snap = core.snapshot(2.0, {})
    assert snap.instances == {1: {"running": 4, "waiting": 2, "kv_used": 0.25, "health": "ok", "profile": "p"}}
    assert snap.policy["serving"] == 3 and snap.policy["canary"] is None and snap.policy["rollbacks"] == 1
    assert snap.policy["last_event"] == "rolled_back v4: guard"
