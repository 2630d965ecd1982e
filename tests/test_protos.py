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
