"""The wire contract: one message type per topic.

Every field that crosses Kafka is defined here and nowhere else. Messages are
pydantic models (validation + JSON Schema generation); bytes on the wire are
JSON produced and parsed by orjson (see ``protos.codec``). Each message carries
``v``, the schema version; a consumer refuses a version it does not know.

Time fields ending in ``_s`` are seconds on the *stack clock*: in the live stack
that is wall-clock time multiplied by the run's time scale (so latencies are
reported in simulated-GPU seconds, comparable with the simulator); in the
simulator it is virtual time from the start of the workload.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1

NonNegFloat = Field(ge=0.0)


class Message(BaseModel):
    """Base of every wire message: strict about types, tolerant of unknown keys
    (so a newer producer that adds an optional field does not break an older
    consumer), frozen once built."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    v: Literal[1] = SCHEMA_VERSION


class Request(Message):
    """An inference request as the load generator publishes it (topic ``requests``).

    ``output_tokens`` is the *oracle* output length: simulated workers need it to
    know when the request finishes. The router must never read it — it converts a
    ``Request`` into a ``phaser.types.Job`` (which has no such field) before any
    predictor or policy sees it.
    """

    id: str = Field(min_length=1, max_length=256)
    arrival_s: float = Field(ge=0.0, description="stack-clock time the request entered the system")
    prompt_tokens: int = Field(ge=1, le=1_000_000)
    task: str | None = Field(default=None, max_length=128, description="task or application tag, if known")
    prefix_ids: list[int] | None = Field(
        default=None, description="one id per prefix block (prefix_block_tokens tokens); equal leading ids = shared prefix"
    )
    prompt_text: str | None = Field(default=None, description="optional prompt text (predictor input)")
    output_tokens: int | None = Field(
        default=None, ge=1, le=1_000_000, description="ORACLE output length, for simulated workers only"
    )


class Assignment(Message):
    """The router's decision (topic ``assignments``, partition = instance)."""

    request: Request
    instance: int = Field(ge=0)
    policy: str
    policy_version: int = Field(ge=0)
    decided_s: float = Field(ge=0.0, description="stack-clock time of the decision")
    router_wait_s: float = Field(ge=0.0, description="time the request waited in the router queue")
    predicted_tokens: float = Field(ge=0.0, description="output-length predictor's expected length")
    predicted_bucket: int = Field(ge=0, le=2)
    features: list[float] | None = Field(default=None, description="the feature vector the policy saw (RL policies)")
    action: int = Field(ge=-1, description="the action taken (instance index) when features were recorded, else -1")


class Completion(Message):
    """One finished request (topic ``completions``)."""

    request_id: str
    instance: int = Field(ge=0)
    task: str | None = None
    policy: str = ""
    policy_version: int = Field(default=0, ge=0)
    arrival_s: float = Field(ge=0.0)
    admitted_s: float = Field(ge=0.0, description="first admission into the instance's running batch")
    first_token_s: float = Field(ge=0.0)
    finish_s: float = Field(ge=0.0)
    ttft_s: float = Field(ge=0.0)
    tbt_mean_s: float = Field(ge=0.0)
    tbt_p99_s: float = Field(ge=0.0)
    tbt_max_s: float = Field(ge=0.0)
    e2e_s: float = Field(ge=0.0)
    router_wait_s: float = Field(ge=0.0)
    queue_wait_s: float = Field(ge=0.0, description="time waiting in the instance queue before first admission")
    preemptions: int = Field(ge=0)
    prompt_tokens: int = Field(ge=1)
    output_tokens: int = Field(ge=1)
    cached_prompt_tokens: int = Field(default=0, ge=0, description="prompt tokens served from the prefix cache")


class InstanceStatus(Message):
    """Heartbeat of one instance (topic ``instance-status``)."""

    instance: int = Field(ge=0)
    ts_s: float = Field(ge=0.0)
    profile: str
    running_prefill: int = Field(ge=0, description="running requests still in prefill (incl. chunked)")
    running_decode: int = Field(ge=0)
    waiting: int = Field(ge=0, description="requests in the instance's waiting queue")
    kv_blocks_used: int = Field(ge=0)
    kv_blocks_total: int = Field(ge=1)
    tokens_in_flight: int = Field(ge=0, description="KV tokens held by running requests")
    decode_tokens_left: int = Field(default=0, ge=0, description="oracle-free estimate is the router's; this is 0 unless known")
    completed: int = Field(default=0, ge=0, description="requests completed since the worker started")


class PolicyUpdate(Message):
    """A policy lifecycle event (topic ``policy-updates``)."""

    kind: Literal["published", "canary", "promoted", "rolled_back", "pinned", "refused"]
    version: int = Field(ge=0)
    path: str = ""
    checksum: str = ""
    reason: str = ""
    ts_s: float = Field(ge=0.0)
    stats: dict[str, float] = Field(default_factory=dict)


class DeadLetter(Message):
    """A message that could not be used, with why (topic ``dead-letters``)."""

    topic: str
    reason: str
    original_b64: str = Field(description="the original bytes, base64")
    partition: int = -1
    offset: int = -1
    ts_s: float = Field(ge=0.0)
    source: str = Field(default="", description="which service dead-lettered it")


#: topic name -> message type. One message type per topic.
TOPICS: dict[str, type[Message]] = {
    "requests": Request,
    "assignments": Assignment,
    "completions": Completion,
    "instance-status": InstanceStatus,
    "policy-updates": PolicyUpdate,
    "dead-letters": DeadLetter,
}
