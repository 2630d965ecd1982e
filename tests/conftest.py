"""Shared fixtures. Every Kafka test talks to a real broker started here.

``broker`` and ``bare_broker`` are parametrized over both brokers phaser
supports, so every Kafka-facing test runs twice:

* ``tansu`` — the embedded broker ``pip install`` users get (``phaser up``);
  ``broker`` enforces protos/' JSON Schemas, ``bare_broker`` does not;
* ``kafka`` — a real single-node KRaft Apache Kafka provisioned from Maven
  Central (``services.apache_kafka``), the same version as docker-compose.yml.
  A plain Kafka has no schema registry, so both fixtures are the same broker.

Tests of a feature only one broker has use ``schema_broker`` (tansu's schema
registry) or ``kafka`` (durable log, idempotent producer) and say so.
Without Java or Maven the ``kafka`` tier is skipped with one line saying why,
unless ``PHASER_REQUIRE_KAFKA=1`` (CI), where that is an error.
"""

from __future__ import annotations

import os

import pytest

from services.broker import EmbeddedBroker, free_port

BROKERS = ("tansu", "kafka")
#: SASL users of the Kafka fixture's SASL_SSL listener (``kafka.secure_bootstrap``)
KAFKA_USERS = {"phaser": "pw-never-printed-7f3a"}


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    """A real Apache Kafka (KRaft, single node) for the whole session."""
    from services.apache_kafka import ApacheKafka, KafkaUnavailable

    log = tmp_path_factory.mktemp("kafka") / "broker.log"
    try:
        k = ApacheKafka(log_path=str(log), users=KAFKA_USERS)  # also a SASL_SSL listener (tests/stack/test_kafka_security.py)
        k.start()
    except KafkaUnavailable as e:
        if os.environ.get("PHASER_REQUIRE_KAFKA"):
            raise
        pytest.skip(f"Apache Kafka tier skipped: {e}")
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="session")
def schema_broker():
    """tansu with protos/' schemas enforced by the broker itself (a tansu-only feature)."""
    with EmbeddedBroker(port=free_port(), schemas=True) as b:
        yield b


@pytest.fixture(scope="session")
def _tansu_bare():
    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        yield b


@pytest.fixture(scope="session", params=BROKERS)
def broker(request):
    """A real Kafka-protocol broker: tansu with schemas enforced, then Apache Kafka."""
    name = "schema_broker" if request.param == "tansu" else "kafka"
    return request.getfixturevalue(name)


@pytest.fixture(scope="session", params=BROKERS)
def bare_broker(request):
    """A broker without schema enforcement (what a plain Kafka cluster does), so
    consumer-side validation and dead-lettering are exercised."""
    name = "_tansu_bare" if request.param == "tansu" else "kafka"
    return request.getfixturevalue(name)
