"""Shared fixtures. Every Kafka test talks to a real broker (tansu) started here."""

from __future__ import annotations

import pytest

from services.broker import EmbeddedBroker, free_port


@pytest.fixture(scope="session")
def broker():
    """A real Kafka-protocol broker with protos/' schemas enforced, for the whole session."""
    with EmbeddedBroker(port=free_port(), schemas=True) as b:
        yield b


@pytest.fixture(scope="session")
def bare_broker():
    """A real broker without schema enforcement: what a plain Kafka cluster does,
    so consumer-side validation and dead-lettering can be exercised."""
    with EmbeddedBroker(port=free_port(), schemas=False) as b:
        yield b
