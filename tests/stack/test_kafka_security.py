"""SASL (PLAIN, SCRAM-SHA-256) and TLS pass-through (``PHASER_KAFKA_*``), against the
Apache Kafka fixture's SASL_SSL listener (a feature only the Kafka tier has:
tansu has no SASL or TLS). The fixture makes a throwaway CA and credentials."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from phaser.errors import PhaserError
from services import kafka_security
from services.kafka import Topics, ensure_topics, make_producer, start_consumer, stop_consumer

from tests.conftest import KAFKA_USERS

USER, PASSWORD = next(iter(KAFKA_USERS.items()))


def _env(kafka, mech: str, password: str = PASSWORD) -> dict:
    return {"PHASER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PHASER_KAFKA_SASL_MECHANISM": mech,
            "PHASER_KAFKA_SASL_USERNAME": USER, "PHASER_KAFKA_SASL_PASSWORD": password,
            "PHASER_KAFKA_SSL_CAFILE": kafka.ca_file}


@pytest.mark.parametrize("env, why", [
    ({"PHASER_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
    ({"PHASER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "needs PHASER_KAFKA_SASL_USERNAME"),
    ({"PHASER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "PHASER_KAFKA_SASL_MECHANISM": "GSSAPI",
      "PHASER_KAFKA_SASL_USERNAME": "u", "PHASER_KAFKA_SASL_PASSWORD": "p"}, "PHASER_KAFKA_SASL_MECHANISM"),
    ({"PHASER_KAFKA_SECURITY_PROTOCOL": "SSL", "PHASER_KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "no such file"),
    ({"PHASER_KAFKA_SASL_USERNAME": "u"}, "PHASER_KAFKA_SECURITY_PROTOCOL is PLAINTEXT"),
])
def test_bad_security_settings_are_one_clear_error(monkeypatch, env, why):
    for k in kafka_security.ENV:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(PhaserError, match=why):
        kafka_security.client_options()


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
async def test_clients_authenticate_over_tls_and_round_trip_a_record(kafka, monkeypatch, mech):
    for k, v in _env(kafka, mech).items():
        monkeypatch.setenv(k, v)
    assert kafka_security.describe()["sasl_password"] == "***"
    topics = Topics(f"sec{uuid.uuid4().hex[:6]}-")
    await ensure_topics(kafka.secure_bootstrap, 1, topics)
    p = make_producer(kafka.secure_bootstrap)
    await p.start()
    try:
        await p.send_and_wait(topics.name("requests"), b"over-tls")
    finally:
        await p.stop()
    c = await start_consumer(kafka.secure_bootstrap, [(topics.name("requests"), 0)], group_id=None)
    try:
        got = await c.getmany(timeout_ms=10_000)
        assert [r.value for recs in got.values() for r in recs] == [b"over-tls"]
    finally:
        await stop_consumer(c)


async def test_a_wrong_password_is_refused_and_never_printed(kafka, monkeypatch):
    for k, v in _env(kafka, "SCRAM-SHA-256", password="not-the-password-91c2").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(PhaserError) as e:
        await ensure_topics(kafka.secure_bootstrap, 1, Topics("nope-"))
    assert "not-the-password-91c2" not in str(e.value)


def test_the_whole_stack_runs_over_sasl_ssl_and_prints_no_secret(kafka, tmp_path):
    import os

    out = tmp_path / "up.json"
    r = subprocess.run([sys.executable, "-m", "phaser.cli.main", "up", "--bootstrap", kafka.secure_bootstrap,
                        "--requests", "60", "--no-monitor", "--no-trainer", "--json", str(out)],
                       env={**os.environ, **_env(kafka, "SCRAM-SHA-256")}, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads(out.read_text())
    assert (s["completed"], s["lost"], s["duplicates"]) == (60, 0, 0)
    assert PASSWORD not in r.stdout + r.stderr + out.read_text()
