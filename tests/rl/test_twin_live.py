"""The twin loop on the live stack: the router serves a deliberately bad incumbent
(``random``), the trainer learns in its twin from the stream, and versions that beat
the incumbent in held-out replay are published, canaried and served, losing nothing.
Nothing here bypasses the twin's evaluation: the trainer runs its own rounds, in its
own child process, exactly as ``phaser trainer --twin-profile`` does."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from load_generator.registry import load_workload
from phaser.twin import Twin
from phaser.versions.store import CheckpointStore
from policy_trainer.bench import run_live
from policy_trainer.service import build_core, run_trainer
from services.clock import StackClock
from services.kafka import Topics

PROFILE = "a100-llama3-8b"


@pytest.mark.timeout(1500)
async def test_a_random_incumbent_is_replaced_by_twin_winners_with_nothing_lost(_tansu_bare, tmp_path):
    bootstrap = _tansu_bare.bootstrap
    topics = Topics(f"t{uuid.uuid4().hex[:8]}-")
    store = tmp_path / "store"
    core = build_core(str(store), 4, None, 0, publish_every_updates=500, publish_every_s=30.0, freeze=False,
                      settle_s=30.0)
    core.twin, core.twin_every_s = Twin((PROFILE,) * 4, window=800), 1.0  # back-to-back rounds
    stop = asyncio.Event()
    trainer: list[asyncio.Task] = []
    time_scale = 2.0

    async def start_trainer(run, _publish):
        trainer.append(asyncio.create_task(run_trainer(bootstrap, core, StackClock(time_scale), 4, topics, stop,
                                                       on_report=lambda st: None)))

    def served_versions(run) -> set[int]:
        return {a.policy_version for a in run.assignments.values() if a.policy_version > 0}

    def two_served(run) -> bool:
        if trainer and trainer[0].done():
            trainer[0].result()  # a crashed trainer fails loudly
        return len(set(core.published) & served_versions(run)) >= 2

    # far more requests than needed: the load stops once two twin versions have served
    requests = list(load_workload("azure-conv", n=40_000, rate=14.0, seed=11))
    try:
        run = await run_live(bootstrap, requests, instances=4, profile=PROFILE, time_scale=time_scale,
                             swap_opts={"store": str(store), "canary_share": 0.25, "min_samples": 50,
                                        "promote_after": 100},
                             before_load=start_trainer, topics=topics, timeout_s=1300.0, policy="random",
                             until=two_served)
    finally:
        stop.set()
        if trainer:
            await trainer[0]
    sent = run.publish_report["handed"]
    assert run.publish_report["failed"] == 0 and sent < len(requests)
    want = {r.id for r in requests[:sent]}
    assert want <= run.completions.keys(), f"lost {len(want - run.completions.keys())} of {sent}"
    assert run.duplicates == 0 and run.assignment_duplicates == 0
    served = set(core.published) & served_versions(run)
    assert len(served) >= 2, (core.published, core.twin_outcomes, core.twin_last)
    st = CheckpointStore(store)
    for v in served:  # each beat its incumbent in the twin's held-out replays; the first ones beat random
        twin = st.load(v).metadata["twin"]
        assert twin["gain_pct"] > 0 and twin["wins_on"] * 2 > twin["held_out"]
    first = st.load(min(served)).metadata["twin"]
    assert first["incumbent"] == "random"
    # the stream's requests the router decided with a twin version were served like any other
    assert sum(1 for a in run.assignments.values() if a.policy_version in served) > 0
