"""Router replicas against a real broker: a replica that does not match the group is refused
with one line before it routes anything (the group's run under fault is in test_chaos.py)."""

from __future__ import annotations

import uuid

import pytest

from phaser.errors import PhaserError
from services.clock import StackClock
from services.kafka import Topics, ensure_topics, partition_count
from services.router import build_core, run_router


async def test_a_replica_started_with_another_instance_count_than_the_group_is_refused(bare_broker):
    topics = Topics(prefix=f"rep{uuid.uuid4().hex[:8]}-")
    await ensure_topics(bare_broker.bootstrap, 4, topics, routers=2)  # the group: 4 instances, 2 replicas
    assert await partition_count(bare_broker.bootstrap, topics.name("requests")) == 2
    core = build_core("round-robin", 2, ["v100-llama2-7b"], seed=0, predictor="online")
    core.router_id = "r9"
    with pytest.raises(PhaserError, match=r"the group routes to 4 instances .* this replica was started with 2"):
        await run_router(bare_broker.bootstrap, core, StackClock(10.0), topics, routers=2)
    assert core.routed == 0
