"""``phaser chaos`` on both brokers: real processes, kill -9, a fault schedule.

Counts come from ``completions`` as a client sees them; the deadlines are
generous (the drain timeout ends a run only after 30 s without progress), so a
loaded machine makes these tests slower, not red."""

from __future__ import annotations

import pytest

from services.chaos import POISON, ChaosConfig, run_chaos

pytestmark = pytest.mark.timeout(600)


def _why(row: dict) -> str:
    """The whole row, lost ids and where they went included (pytest would truncate the dict)."""
    return "; ".join(f"{k}={v}" for k, v in row.items())


def _chaos(broker, faults, **kw):
    cfg = ChaosConfig(broker=broker.kind, faults=faults, requests=kw.pop("requests", 400), **kw)
    return {r["fault"]: r for r in run_chaos(cfg, progress=lambda r: None, broker=broker)}


def test_kill_9_of_a_worker_hosting_half_the_instances_loses_nothing_and_answers_once(bare_broker):
    (row,) = _chaos(bare_broker, ("kill-worker",)).values()
    assert (row["lost"], row["duplicates"], row["failed"]) == (0, 0, 0), _why(row)
    assert row["completed"] == row["requested"] == 400
    # its requests were re-routed (epoch >= 1) after the failover limit (5 s wall floor), before it came back (12 s)
    assert row["rerouted"] > 0 and 4.0 < row["reroute_s"] < 12.0, row


def test_kill_9_of_the_router_and_poison_records_lose_nothing(bare_broker):
    rows = _chaos(bare_broker, ("kill-router", "poison"))
    for row in rows.values():
        assert (row["lost"], row["duplicates"], row["failed"]) == (0, 0, 0), _why(row)
        assert row["restarts"] >= (1 if row["fault"] == "kill-router" else 0)
    assert rows["poison"]["poison_sent"] == len(POISON) and rows["poison"]["dead_letters"] == len(POISON)


def test_kill_9_of_a_router_replica_moves_its_share_and_loses_nothing(bare_broker):
    """Two router replicas in one consumer group; r1 is killed mid-load and comes back 20 s later:
    its requests partition moves to r0 (after the 6 s session timeout) and back, nothing is lost
    or answered twice, and r0 decided on r1's partition before r1 returned."""
    # 400 requests at 2 req/s (stack) = 20 wall s of load at time scale 10: the move happens mid-load
    (row,) = _chaos(bare_broker, ("kill-replica",), rate=2.0, down_s=20.0).values()
    assert (row["lost"], row["duplicates"], row["failed"]) == (0, 0, 0), _why(row)
    assert row["completed"] == row["requested"] == 400
    assert row["routed_by"].get("r0", 0) > 0 and row["routed_by"].get("r1", 0) > 0, row
    assert row["resume_s"] is not None and row["resume_s"] < 20.0, _why(row)
