"""Bytes <-> messages. orjson on the wire; pydantic validates on the way in.

``decode`` never raises anything but ``DecodeError``, whose ``reason`` is what
goes into the dead-letter topic.
"""

from __future__ import annotations

import base64
import time

import orjson
from pydantic import ValidationError

from protos.messages import MAX_DEAD_LETTER_ORIGINAL, MAX_REASON, READABLE_VERSIONS, SCHEMA_VERSION, TOPICS, DeadLetter, Message


class DecodeError(ValueError):
    """A message that cannot be used; ``reason`` is a one-line explanation."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def encode(msg: Message) -> bytes:
    """JSON bytes of ``msg``, always at this build's schema version."""
    d = msg.model_dump(mode="python", exclude_none=True)
    d["v"] = SCHEMA_VERSION
    return orjson.dumps(d)


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "<root>"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    more = "" if err.error_count() <= 3 else f" (+{err.error_count() - 3} more)"
    return "; ".join(parts) + more


def decode(topic: str, data: bytes | None, cls: type[Message] | None = None) -> Message:
    cls = cls or TOPICS.get(topic)
    if cls is None:
        raise DecodeError(f"unknown topic {topic!r}")
    if data is None:
        raise DecodeError("empty message (null value)")
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise DecodeError(f"expected a JSON object, got {type(obj).__name__}")
    v = obj.get("v", SCHEMA_VERSION)
    if type(v) is not int or v not in READABLE_VERSIONS:
        raise DecodeError(f"unsupported schema version {v!r} (this build reads {', '.join(map(str, READABLE_VERSIONS))})")
    try:
        return cls.model_validate(obj)
    except ValidationError as e:
        raise DecodeError(f"invalid {cls.__name__}: {_reason(e)}") from None


def dead_letter(topic: str, data: bytes | None, reason: str, *, partition: int = -1, offset: int = -1,
                source: str = "", now_s: float | None = None) -> DeadLetter:
    data = data or b""
    return DeadLetter(
        topic=topic[:128],
        reason=reason[:MAX_REASON],
        original_b64=base64.b64encode(data[:MAX_DEAD_LETTER_ORIGINAL]).decode("ascii"),
        original_bytes=len(data),
        truncated=len(data) > MAX_DEAD_LETTER_ORIGINAL,
        partition=partition,
        offset=offset,
        ts_s=time.time() if now_s is None else now_s,
        source=source[:128],
    )
