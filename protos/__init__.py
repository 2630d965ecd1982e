"""phaser's wire contract: one message type per Kafka topic (see messages.py)."""

from protos.codec import DecodeError, dead_letter, decode, encode
from protos.messages import (
    SCHEMA_VERSION,
    TOPICS,
    Assignment,
    Completion,
    DeadLetter,
    InstanceStatus,
    Message,
    PolicyUpdate,
    Request,
)

__all__ = [
    "SCHEMA_VERSION", "TOPICS", "Message", "Request", "Assignment", "Completion", "InstanceStatus",
    "PolicyUpdate", "DeadLetter", "encode", "decode", "dead_letter", "DecodeError",
]
