"""``phaser up``'s child command lines: what each service is told (no stack is started)."""

from __future__ import annotations

import pytest

from phaser.errors import PhaserError
from services.up import UpConfig, check_config, child_commands


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_the_twin_is_told_the_router_s_profile_and_the_workers_run_the_real_one():
    cfg = UpConfig(policy="rl", instances=4, profile="a100-llama3-8b", worker_profile="a100-llama3-8b@x1.6",
                   twin=True, twin_every_s=30.0, start_policy="random", checkpoints="/tmp/s")
    check_config(cfg)
    cmds = child_commands(cfg, "127.0.0.1:9092", "")
    assert _opt(cmds["router"], "--profile") == ["a100-llama3-8b"]
    assert _opt(cmds["router"], "--policy") == ["random"] and _opt(cmds["router"], "--store") == ["/tmp/s"]
    assert _opt(cmds["router"], "--explore") == ["0"]  # the twin needs no random picks
    assert _opt(cmds["worker-0-3"], "--profile") == ["a100-llama3-8b@x1.6"]
    assert _opt(cmds["trainer"], "--twin-profile") == ["a100-llama3-8b"]
    assert _opt(cmds["trainer"], "--twin-every-s") == ["30.0"] and _opt(cmds["trainer"], "--twin-window") == ["2000"]
    slow = child_commands(UpConfig(instances=4, workers=2, heartbeat_s=2.0), "127.0.0.1:9092", "")
    assert _opt(slow["router"], "--heartbeat-s") == _opt(slow["worker-0-1"], "--heartbeat-s") == ["2.0"]
    plain = child_commands(UpConfig(policy="rl", checkpoints="/tmp/s"), "127.0.0.1:9092", "")
    assert "--twin-profile" not in plain["trainer"] and _opt(plain["router"], "--policy") == ["round-robin"]
    assert "--explore" not in plain["router"]  # online gradient learning keeps its exploration
    assert _opt(plain["worker-0-3"], "--profile") == _opt(plain["router"], "--profile")
    half = UpConfig(instances=4, workers=2, profile="a100-llama3-8b",
                    worker_profile="a100-llama3-8b,a100-llama3-8b,a100-llama3-8b@x1.6,a100-llama3-8b@x1.6")
    cmds = child_commands(half, "127.0.0.1:9092", "")
    assert _opt(cmds["worker-0-1"], "--profile") == ["a100-llama3-8b"]
    assert _opt(cmds["worker-2-3"], "--profile") == ["a100-llama3-8b@x1.6"]
    with pytest.raises(PhaserError, match="worker 0-3 would host 2 different profiles"):
        child_commands(UpConfig(instances=4, worker_profile=half.worker_profile), "127.0.0.1:9092", "")


@pytest.mark.parametrize("cfg, msg", [
    (UpConfig(policy="rl", start_policy="rl-guided"), "--start-policy must be a heuristic"),
    (UpConfig(policy="rl", twin=True, trainer=False), "--twin is the trainer's"),
    (UpConfig(worker_profile="no-such-gpu"), "no-such-gpu"),
    (UpConfig(broker="redpanda"), "--broker must be tansu or kafka"),
    (UpConfig(broker="kafka", bootstrap="127.0.0.1:9092"), "--broker starts a broker; --bootstrap uses one"),
])
def test_bad_up_options_are_refused_before_anything_starts(cfg, msg):
    with pytest.raises(PhaserError, match=msg):
        check_config(cfg)


def test_router_replicas_get_their_own_ids_and_seeds():
    cmds = child_commands(UpConfig(routers=3, seed=5), "127.0.0.1:9092", "")
    routers = [n for n in cmds if n.startswith("router")]
    assert routers == ["router-r0", "router-r1", "router-r2"]
    assert [_opt(cmds[n], "--replica-id") for n in routers] == [["r0"], ["r1"], ["r2"]]
    assert [_opt(cmds[n], "--seed") for n in routers] == [["5"], ["6"], ["7"]]  # randomized pickers do not herd in step
    assert all(_opt(cmds[n], "--routers") == ["3"] for n in routers)
    one = child_commands(UpConfig(), "127.0.0.1:9092", "")
    assert "router" in one and "--replica-id" not in one["router"]


def test_a_replica_without_an_id_or_with_a_bad_one_is_refused(capsys):
    from phaser.cli.main import main

    assert main(["router", "--routers", "2"]) == 2
    assert "--routers N needs --replica-id" in capsys.readouterr().err
    assert main(["router", "--replica-id", "a b"]) == 2
    assert "--replica-id 'a b'" in capsys.readouterr().err
