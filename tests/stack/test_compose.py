"""docker-compose.yml cannot be run here (no Docker engine), so check it
statically: every service's command is a real `phaser` subcommand whose options
and environment parse, Kafka is KRaft with a healthcheck, and the checkpoint
volume is shared by trainer and router."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from phaser.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PHASER_SERVICES = sorted(n for n, s in SERVICES.items() if s.get("command", [None])[0] == "phaser")


def _cli():
    return get_command(app)


def _all_envvars(group) -> set[str]:
    out = set()
    for cmd in group.commands.values():
        for p in cmd.params:
            ev = getattr(p, "envvar", None)
            out |= {ev} if isinstance(ev, str) else set(ev or ())
    return out


def test_compose_has_the_whole_stack():
    assert {"kafka", "router", "trainer", "monitor", "load"} <= set(SERVICES)
    assert any(n.startswith("worker") for n in SERVICES)
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert "healthcheck" in kafka
    for name in PHASER_SERVICES:
        assert SERVICES[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert SERVICES[name]["environment"]["PHASER_BOOTSTRAP"] == "kafka:9092"
    vols = {n: [v.split(":")[0] for v in SERVICES[n].get("volumes", [])] for n in ("router", "trainer")}
    assert "checkpoints" in vols["router"] and "checkpoints" in vols["trainer"] and "checkpoints" in COMPOSE["volumes"]
    assert SERVICES["load"]["restart"] == "no"  # one-shot


@pytest.mark.parametrize("name", PHASER_SERVICES)
def test_service_command_parses(name, monkeypatch):
    svc = SERVICES[name]
    group = _cli()
    _, sub, *args = svc["command"]
    assert sub in group.commands, f"{name}: `phaser {sub}` is not a subcommand"
    import re

    for k, v in svc["environment"].items():  # compose's ${VAR:-default}, with VAR unset
        monkeypatch.setenv(k, re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)))
    cmd = group.commands[sub]
    ctx = cmd.make_context(f"phaser {sub}", list(args))  # parses options and env vars; raises on a bad one
    assert ctx.params


def test_every_env_var_in_compose_is_read_by_some_option():
    known = _all_envvars(_cli())
    used = {k for s in SERVICES.values() for k in (s.get("environment") or {}) if k.startswith("PHASER_")}
    assert used and used <= known, f"unknown PHASER_ variables: {sorted(used - known)}"


@pytest.mark.parametrize("name", PHASER_SERVICES)
def test_service_specific_env_vars_are_read_by_that_service(name):
    """Variables a service sets beyond the shared block must configure *its* command."""
    shared = set(COMPOSE["x-phaser"]["environment"])
    svc = SERVICES[name]
    cmd = _cli().commands[svc["command"][1]]
    mine = set()
    for p in cmd.params:
        ev = getattr(p, "envvar", None)
        mine |= {ev} if isinstance(ev, str) else set(ev or ())
    specific = {k for k in svc["environment"] if k.startswith("PHASER_")} - shared
    assert specific <= mine, f"{name}: not read by `phaser {svc['command'][1]}`: {sorted(specific - mine)}"
    assert "PHASER_BOOTSTRAP" in mine


def test_worker_ranges_cover_the_cluster_once():
    from phaser.cli._common import parse_instances

    hosted = []
    for n, s in SERVICES.items():
        if s.get("command", [None, None])[1] == "worker":
            hosted += parse_instances(s["environment"]["PHASER_WORKER_INSTANCES"])
            assert "4" == s["command"][s["command"].index("--partitions") + 1]
    assert sorted(hosted) == list(range(int(COMPOSE["x-phaser"]["environment"]["PHASER_INSTANCES"])))


def test_prometheus_scrapes_every_phaser_service_and_grafana_has_the_dashboard():
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    port = COMPOSE["x-phaser"]["environment"]["PHASER_METRICS_PORT"]
    scraped = {}
    for job in prom["scrape_configs"]:
        for sc in job.get("static_configs", ()):
            for t in sc["targets"]:
                host, p = t.rsplit(":", 1)
                scraped[host] = (p, sc["labels"]["service"])
    assert set(scraped) == set(PHASER_SERVICES), "Prometheus must scrape exactly the phaser services of compose"
    for name, (p, service) in scraped.items():
        assert p == str(port) and SERVICES[name]["command"][1] == service, (name, p, service)
    graf = SERVICES["grafana"]
    mounts = {v.split(":")[1]: ROOT / v.split(":")[0] for v in graf["volumes"]}
    assert (mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").exists()
    dash_dir = mounts["/var/lib/grafana/dashboards"]
    assert (dash_dir / "phaser.json").exists()
    prov = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "dashboards" / "phaser.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    ds = yaml.safe_load((mounts["/etc/grafana/provisioning"] / "datasources" / "prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus" and ds["datasources"][0]["url"].startswith("http://prometheus:")
    assert SERVICES["prometheus"]["volumes"][0].startswith("./deploy/prometheus/prometheus.yml:")
