"""The streaming stack end to end on a real broker: load -> router -> worker -> completions."""

from __future__ import annotations

import base64
import uuid

import orjson

from load_generator.registry import load_workload
from services.kafka import Publisher, Topics, fetch, make_producer, start_consumer, stop_consumer


async def test_500_requests_in_500_completions_out(bare_broker, stack_runner):
    reqs = load_workload("paper-mix", n=500, seed=3)
    run = await stack_runner(bare_broker.bootstrap, reqs, instances=4, profile="v100-llama2-7b", time_scale=100.0)
    assert run.publish_report["requested"] == 500
    assert sorted(run.completions) == sorted(r.id for r in reqs)  # each id exactly once ...
    assert run.duplicates == 0
    assert all(0 <= c.instance < 4 for c in run.completions.values())  # ... on a valid instance
    by_id = {r.id: r for r in reqs}
    assert all(c.output_tokens == by_id[c.request_id].output_tokens for c in run.completions.values())
    assert all(c.finish_s >= c.first_token_s >= c.arrival_s for c in run.completions.values())
    assert {c.instance for c in run.completions.values()} == {0, 1, 2, 3}  # round robin spreads
    assert run.router.routed == 500 and run.worker.completed == 500


async def test_least_tokens_in_the_live_stack_completes_every_request(bare_broker, stack_runner):
    """Issue 5: a heuristic that reads the view (prompt + predicted decode tokens
    left) serves the live stack, and every request completes once."""
    reqs = load_workload("paper-mix", n=200, seed=11)
    run = await stack_runner(bare_broker.bootstrap, reqs, instances=4, profile="v100-llama2-7b", time_scale=100.0,
                             policy="least-tokens")
    assert sorted(run.completions) == sorted(r.id for r in reqs)
    assert run.duplicates == 0 and run.router.routed == 200
    assert all(c.policy == "least-tokens" and 0 <= c.instance < 4 for c in run.completions.values())


#: the fault probe's poison prompt: 900 KB of prompt_text passed the old schema and made
#: the router's assignment exceed the producer's record limit (a crash loop on restart)
POISON = orjson.dumps({"v": 2, "id": "poison", "arrival_s": 1.0, "prompt_tokens": 5, "output_tokens": 5,
                       "prompt_text": "x" * 900_000})


async def test_malformed_requests_are_dead_lettered_and_valid_ones_served_once(bare_broker, stack_runner):
    bad = {
        b"{not json at all": "not JSON",
        orjson.dumps({"v": 1, "id": "no-prompt", "arrival_s": 1.0, "output_tokens": 5}): "prompt_tokens",
        orjson.dumps({"v": 1, "id": "neg", "arrival_s": 1.0, "prompt_tokens": -3, "output_tokens": 5}): "prompt_tokens",
        orjson.dumps({"v": 9, "id": "future", "arrival_s": 1.0, "prompt_tokens": 3}): "schema version",
        b'{"v": 2, "id": "\xff", "arrival_s": 1.0, "prompt_tokens": 3}': "not JSON",
        b'{"v": 2, "id": "nan", "arrival_s": NaN, "prompt_tokens": 3}': "not JSON",
        b'{"v": 2, "id": "big", "arrival_s": 1.0, "prompt_tokens": 99999999999999999999999}': "prompt_tokens",
        orjson.dumps({"v": 2, "id": "far", "arrival_s": 1e300, "prompt_tokens": 3, "output_tokens": 2}): "arrival_s",
        POISON: "prompt_text",
    }

    reqs = load_workload("paper-mix", n=40, seed=5)

    async def inject(topics: Topics):
        prod = make_producer(bare_broker.bootstrap)
        await prod.start()
        pub = Publisher(prod, topics, source="test")
        for raw in bad:
            await (await prod.send(topics.name("requests"), raw))  # raw bytes, past every client-side check
        await pub.send("requests", reqs[7])  # the publisher sends it again later: routed once
        await pub.flush()
        await prod.stop()

    topics = Topics(f"t{uuid.uuid4().hex[:8]}-")
    run = await stack_runner(bare_broker.bootstrap, reqs, instances=2, profile="v100-llama2-7b", time_scale=100.0,
                             topics=topics, extra_load=inject)
    assert sorted(run.completions) == sorted(r.id for r in reqs)  # the router kept serving
    assert run.duplicates == 0 and run.router.duplicates == 1 and run.router.routed == 40
    c = await start_consumer(bare_broker.bootstrap, [(topics.name("dead-letters"), 0)], group_id=None)
    try:
        dls = []
        for _ in range(20):
            msgs, _ = await fetch(c, Publisher(None, topics, "test"), 0.1)
            dls += [m.msg for m in msgs]
            if len(dls) >= len(bad):
                break
    finally:
        await stop_consumer(c)
    assert len(dls) == len(bad)
    for dl in dls:
        raw = base64.b64decode(dl.original_b64)
        if dl.truncated:  # the poison prompt: a truncated copy, its size recorded
            assert dl.original_bytes == len(POISON) and POISON.startswith(raw) and len(raw) < len(POISON)
            raw = POISON
        assert dl.topic == "requests" and dl.source == "router" and bad[raw] in dl.reason, (dl.reason, raw[:80])
