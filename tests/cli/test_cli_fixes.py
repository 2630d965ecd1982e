"""The CLI defects a new user found (issue 13, item 5): each one readable line
and exit 2 where it was a traceback or silence, and the behaviours that were
missing. In-process through ``phaser.cli.main.main`` unless a real process matters."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phaser.cli.main import main
from phaser.policies.base import available
from services.broker import EmbeddedBroker, free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "phaser" / "checkpoints" / "rl-guided"


def _err(capsys) -> str:
    return capsys.readouterr().err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("phaser ")


@pytest.mark.parametrize("n", ["0", "-3"])
def test_bench_instances_must_be_positive(n, capsys):
    assert main(["bench", "--instances", n]) == 2
    err = _err(capsys)
    assert "Traceback" not in err and "--instances" in err


def test_an_option_no_policy_takes_is_refused(capsys):
    assert main(["bench", "--requests", "20", "--policy-opt", "nonsense=1"]) == 2
    assert "no policy here takes option 'nonsense'" in _err(capsys)
    assert main(["bench", "--requests", "40", "--policies", "workload-aware,round-robin", "--policy-opt", "alpha=0.5"]) == 0


@pytest.mark.parametrize("args, says", [
    (["--policy", "foo"], "unknown policy 'foo'"),
    (["--profile", "foo"], "unknown profile 'foo'"),
    (["--policy", "rl-guided", "--checkpoint", "garbage"], "no checkpoint at garbage"),
    (["--policy", "round-robin", "--checkpoint", str(SHIPPED)], "--checkpoint is for learned policies"),
])
def test_up_checks_its_configuration_before_anything_starts(args, says, capsys):
    t = time.monotonic()
    assert main(["up", "--no-monitor", *args]) == 2
    err = _err(capsys)
    assert says in err and "phaser up: broker" not in err  # refused before the broker or any child started
    assert time.monotonic() - t < 30


def _store(tmp_path) -> Path:
    from phaser.versions.store import CheckpointStore

    store = tmp_path / "store"
    s = CheckpointStore(store)
    s.import_checkpoint(SHIPPED, "test v1")
    s.import_checkpoint(SHIPPED, "test v2")
    return store


def test_promote_with_an_unreachable_broker_changes_nothing(tmp_path, capsys, monkeypatch):
    store = _store(tmp_path)
    before = (store / "current.json").read_text()
    monkeypatch.setenv("PHASER_CONNECT_TIMEOUT", "1")
    assert main(["policy", "promote", "v1", "--store", str(store), "--bootstrap", f"127.0.0.1:{free_port()}"]) == 2
    assert "cannot reach Kafka" in _err(capsys)
    assert (store / "current.json").read_text() == before


def test_promote_on_a_fresh_broker_creates_only_policy_updates(tmp_path, capsys):
    """tansu only: the question is which topics a fresh broker ends up with."""
    from aiokafka.admin import AIOKafkaAdminClient

    store = _store(tmp_path)
    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        assert main(["policy", "promote", "1", "--store", str(store), "--bootstrap", b.bootstrap,
                     "--topic-prefix", "fresh-"]) == 0
        assert "(published)" in capsys.readouterr().out

        async def topics():
            a = AIOKafkaAdminClient(bootstrap_servers=b.bootstrap)
            await a.start()
            try:
                return set(await a.list_topics())
            finally:
                await a.close()

        got = {t for t in asyncio.run(topics()) if t.startswith("fresh-")}
    assert got == {"fresh-policy-updates"}
    assert json.loads((store / "current.json").read_text())["version"] == 1


def test_policy_versions_are_accepted_as_list_prints_them_and_a_missing_store_is_an_error(tmp_path, capsys):
    store = _store(tmp_path)
    assert main(["policy", "show", "v1", "--store", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["checksum_ok"] is True
    assert main(["policy", "show", "v000002", "--store", str(store)]) == 0
    capsys.readouterr()
    assert main(["policy", "show", "vx", "--store", str(store)]) == 2
    assert "bad VERSION 'vx'" in _err(capsys)
    assert main(["policy", "list", "--store", str(tmp_path / "nonexistent")]) == 2
    assert "no checkpoint store at" in _err(capsys)


@pytest.mark.parametrize("cmd", [["up"], ["router"], ["chaos"], ["bench"], ["bench", "router-latency"],
                                 ["bench", "headroom"], ["bench", "leaderboard"]])
def test_every_help_lists_the_policy_names(cmd):
    out = subprocess.run([sys.executable, "-m", "phaser.cli.main", *cmd, "--help"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80"}, timeout=60).stdout
    flat = " ".join(out.split())
    for name in available():
        assert name in flat, (cmd, name)


def test_bench_plot_one_rate_draws_bars_to_the_named_png(tmp_path, capsys):
    png = tmp_path / "one.png"
    assert main(["bench", "--requests", "40", "--policies", "round-robin,least-requests", "--repeat", "2",
                 "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["bench", "--requests", "40", "--scenario", "paper-v100,paper-a100", "--plot", str(tmp_path / "x.png")]) == 2
    assert "makes 2 figures" in _err(capsys)


def test_repeat_tables_never_truncate(capsys):
    assert main(["bench", "--requests", "40", "--repeat", "3", "--policies", "all"]) == 0
    out = capsys.readouterr().out
    assert "±" in out and "…" not in out


def test_the_t_quantile_is_scipys():
    from scipy.stats import t

    from phaser.bench.stats import mean_ci, t975

    assert t975(1) == pytest.approx(12.7062, abs=1e-4) and t975(11) == pytest.approx(t.ppf(0.975, 11))
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(t.ppf(0.975, 2) * 1.0 / 3 ** 0.5)


def test_every_service_waits_for_an_unreachable_broker_the_same_way():
    """One connect policy (``services.kafka.reach``): retried for PHASER_CONNECT_TIMEOUT, then one line, exit 2."""
    port = free_port()
    env = {**os.environ, "PHASER_CONNECT_TIMEOUT": "2"}
    for cmd in (["router"], ["worker", "--instances", "0"], ["load", "--requests", "5", "--no-progress"]):
        t = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "phaser.cli.main", *cmd, "--bootstrap", f"127.0.0.1:{port}"],
                           capture_output=True, text=True, env=env, timeout=120)
        took = time.monotonic() - t
        assert r.returncode == 2, (cmd, r.stderr[-2000:])
        last = r.stderr.strip().splitlines()[-1]
        assert "cannot reach Kafka" in last and "over 2s" in last and "Traceback" not in r.stderr, (cmd, r.stderr[-2000:])
        assert took >= 1.5, (cmd, took)  # it did retry
