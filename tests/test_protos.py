import base64

import pytest

from protos import TOPICS, Assignment, DecodeError, Request, dead_letter, decode, encode
from protos.schemas_gen import main as schemas_main


def test_schemas_checked_in_match_code():
    assert schemas_main(["--check"]) == 0


def test_round_trip_every_topic_example():
    r = Request(id="r1", arrival_s=1.5, prompt_tokens=10, task="eli5", prefix_ids=[1, 2], output_tokens=7)
    assert decode("requests", encode(r)) == r
    a = Assignment(request=r, instance=2, policy="round-robin", policy_version=0, decided_s=1.6,
                   router_wait_s=0.1, predicted_tokens=100.0, predicted_bucket=0, action=2)
    assert decode("assignments", encode(a)) == a


@pytest.mark.parametrize("raw,needle", [
    (b"not json", "not JSON"),
    (b'{"id": "x", "arrival_s": 0}', "prompt_tokens"),
    (b'{"id": "x", "arrival_s": 0, "prompt_tokens": -4}', "prompt_tokens"),
    (b'[1, 2]', "JSON object"),
    (b'{"v": 99, "id": "x", "arrival_s": 0, "prompt_tokens": 3}', "schema version"),
    (b'{"id": "x", "arrival_s": NaN, "prompt_tokens": 3}', "not JSON"),
    (b'{"id": "\xff\xfe", "arrival_s": 0, "prompt_tokens": 3}', "not JSON"),  # invalid UTF-8
    (b'{"id": "x", "arrival_s": 0, "prompt_tokens": 123456789012345678901234567890}', "prompt_tokens"),
    (b'{"id": "x", "arrival_s": 1e400, "prompt_tokens": 3}', "infinity"),
    (b'{"v": true, "id": "x", "arrival_s": 0, "prompt_tokens": 3}', "schema version"),
    (b'{"v": "1", "id": "x", "arrival_s": 0, "prompt_tokens": 3}', "schema version"),
])
def test_decode_rejects_with_reason(raw, needle):
    with pytest.raises(DecodeError) as e:
        decode("requests", raw)
    assert needle in e.value.reason


def test_dead_letter_keeps_original_bytes():
    dl = dead_letter("requests", b"\x00garbage", "not JSON", partition=1, offset=5, source="router")
    assert base64.b64decode(dl.original_b64) == b"\x00garbage"
    assert decode("dead-letters", encode(dl)) == dl


def test_every_topic_has_one_message_type():
    assert set(TOPICS) == {"requests", "assignments", "completions", "instance-status", "policy-updates", "dead-letters"}
    assert len(set(TOPICS.values())) == len(TOPICS)


# --- schema v2: versions, bounds, and one contract for the broker and the consumers

import json  # noqa: E402

import jsonschema  # noqa: E402
import orjson  # noqa: E402

from protos.messages import (MAX_DEAD_LETTER_ORIGINAL, MAX_FEATURES, MAX_PREFIX_IDS, MAX_PROMPT_TEXT, SCHEMA_VERSION,  # noqa: E402
                             Completion, InstanceStatus)
from protos.schemas_gen import SCHEMA_DIR  # noqa: E402

V1_COMPLETION = {"v": 1, "request_id": "r", "instance": 0, "arrival_s": 1.0, "admitted_s": 1.0, "first_token_s": 1.1,
                 "finish_s": 2.0, "ttft_s": 0.1, "tbt_mean_s": 0.01, "tbt_p99_s": 0.02, "tbt_max_s": 0.03, "e2e_s": 1.0,
                 "router_wait_s": 0.0, "queue_wait_s": 0.0, "preemptions": 0, "prompt_tokens": 5, "output_tokens": 3}
V1_STATUS = {"v": 1, "instance": 1, "ts_s": 3.0, "profile": "v100-llama2-7b", "running_prefill": 0, "running_decode": 2,
             "waiting": 0, "kv_blocks_used": 3, "kv_blocks_total": 100, "tokens_in_flight": 40}
V1_ASSIGNMENT = {"v": 1, "request": {"v": 1, "id": "r", "arrival_s": 1.0, "prompt_tokens": 5, "output_tokens": 3},
                 "instance": 0, "policy": "round-robin", "policy_version": 0, "decided_s": 1.0, "router_wait_s": 0.0,
                 "predicted_tokens": 10.0, "predicted_bucket": 0, "action": -1}


def test_v1_messages_are_read_with_the_v2_defaults_and_written_as_v2():
    """A rolling upgrade: v2 consumers read what v1 producers still send."""
    c = decode("completions", orjson.dumps(V1_COMPLETION))
    assert (c.status, c.reason, c.epoch) == ("ok", "", 0)
    s = decode("instance-status", orjson.dumps(V1_STATUS))
    assert (s.health, s.reason) == ("ok", "")
    a = decode("assignments", orjson.dumps(V1_ASSIGNMENT))
    assert a.epoch == 0
    for m in (c, s, a):
        assert orjson.loads(encode(m))["v"] == SCHEMA_VERSION == 2


def test_a_rejected_completion_may_have_no_output():
    c = Completion(**{**V1_COMPLETION, "v": 2, "status": "rejected", "reason": "longer than the context",
                      "output_tokens": 0})
    assert decode("completions", encode(c)) == c
    with pytest.raises(DecodeError, match="status"):
        decode("completions", orjson.dumps({**V1_COMPLETION, "status": "lost"}))


def _record_validator(topic: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((SCHEMA_DIR / f"{topic}.json").read_text()))


def _consumer_accepts(topic: str, raw: bytes) -> bool:
    try:
        decode(topic, raw)
        return True
    except DecodeError:
        return False


#: (topic, message) pairs at and just past every kind of bound
_R = {"id": "r", "arrival_s": 1.0, "prompt_tokens": 5, "output_tokens": 3}
CASES = [
    ("requests", _R, True),
    ("requests", {**_R, "arrival_s": 1e300}, False),                    # clock nonsense
    ("requests", {**_R, "arrival_s": 1e13}, True),
    ("requests", {**_R, "arrival_s": -0.1}, False),
    ("requests", {**_R, "prompt_text": "x" * MAX_PROMPT_TEXT}, True),
    ("requests", {**_R, "prompt_text": "x" * (MAX_PROMPT_TEXT + 1)}, False),  # the 1 MiB poison prompt
    ("requests", {**_R, "prompt_tokens": 10**18}, False),
    ("requests", {**_R, "prefix_ids": [-1]}, False),
    ("requests", {**_R, "id": ""}, False),
    ("requests", {**_R, "v": 3}, False),
    ("requests", {**_R, "task": "t" * 129}, False),
    ("completions", V1_COMPLETION, True),
    ("completions", {**V1_COMPLETION, "ttft_s": -1.0}, False),          # negative latency
    ("completions", {**V1_COMPLETION, "e2e_s": 1e30}, False),
    ("completions", {**V1_COMPLETION, "reason": "r" * 2001}, False),
    ("instance-status", V1_STATUS, True),
    ("instance-status", {**V1_STATUS, "health": "unhealthy", "reason": "engine down"}, True),
    ("instance-status", {**V1_STATUS, "health": "sick"}, False),
    ("assignments", V1_ASSIGNMENT, True),
    ("assignments", {**V1_ASSIGNMENT, "features": [0.0] * (MAX_FEATURES + 1)}, False),
    ("assignments", {**V1_ASSIGNMENT, "epoch": 1001}, False),
    ("assignments", {**V1_ASSIGNMENT, "policy": "p" * 129}, False),
]


@pytest.mark.parametrize("topic,msg,ok", CASES)
def test_the_broker_schema_and_the_consumer_accept_exactly_the_same_messages(topic, msg, ok):
    raw = orjson.dumps(msg)
    assert _consumer_accepts(topic, raw) is ok
    assert _record_validator(topic).is_valid({"value": orjson.loads(raw)}) is ok


def test_the_largest_valid_assignment_fits_in_one_kafka_record():
    from services.kafka import MAX_RECORD_BYTES, RECORD_OVERHEAD_BYTES

    r = Request(id="i" * 256, arrival_s=1e13, prompt_tokens=10**6, task="t" * 128, prefix_ids=[2**53] * MAX_PREFIX_IDS,
                prompt_text="\x01" * MAX_PROMPT_TEXT, output_tokens=10**6)
    a = Assignment(request=r, instance=65_535, policy="p" * 128, policy_version=2**31 - 1, decided_s=1e13,
                   router_wait_s=1e9, predicted_tokens=1e6, predicted_bucket=2, features=[-123456.789e3] * MAX_FEATURES,
                   action=65_535, epoch=1000)
    assert len(encode(a)) + 256 < MAX_RECORD_BYTES - RECORD_OVERHEAD_BYTES


def test_dead_letter_of_a_huge_record_carries_a_truncated_copy():
    big = b"x" * (3 * MAX_DEAD_LETTER_ORIGINAL)
    dl = dead_letter("requests", big, "too big")
    assert dl.truncated and dl.original_bytes == len(big)
    assert base64.b64decode(dl.original_b64) == big[:MAX_DEAD_LETTER_ORIGINAL]
    assert decode("dead-letters", encode(dl)) == dl


def test_instance_status_reads_health():
    s = InstanceStatus(**{**V1_STATUS, "health": "unhealthy", "reason": "circuit open"})
    assert decode("instance-status", encode(s)).health == "unhealthy"
