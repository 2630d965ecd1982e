"""The wire contract: one message type per topic.

Every field that crosses Kafka is defined here and nowhere else. Messages are
pydantic models (validation + JSON Schema generation); bytes on the wire are
JSON produced and parsed by orjson (see ``protos.codec``). Each message carries
``v``, the schema version; a consumer refuses a version it does not know.

Versions. v2 (this build's) adds ``Completion.status``/``reason`` (a request
can end ``rejected`` or ``error`` with no output), ``Assignment.epoch``
(fencing of re-routed requests), ``InstanceStatus.health``/``reason`` and
``DeadLetter.original_bytes``/``truncated``, and later within v2 ``PolicyUpdate``'s
``kind=profiles`` and ``Assignment.router`` (router replicas). Every v2 field has a default that
means what a v1 sender meant, so a v1 message is read as v2 (``protos.codec``):
old and new services can run side by side during a rolling upgrade. A v1
consumer refuses v2 messages, so upgrade consumers first.

Bounds. Every field is bounded (lengths, item counts, magnitudes; floats are
finite) so that every valid message fits in one Kafka record (1 MiB): the
largest valid ``Assignment`` (a ``Request`` with a full ``prompt_text``, whose
JSON escapes can take up to 6 bytes a character, plus a full feature vector)
stays under ``services.kafka.MAX_RECORD_BYTES``. The broker's schemas are
generated from these models, so the broker and the consumers accept exactly the
same messages.

Time fields ending in ``_s`` are seconds on the *stack clock*: in the live stack
that is wall-clock time multiplied by the run's time scale (so latencies are
reported in simulated-GPU seconds, comparable with the simulator); in the
simulator it is virtual time from the start of the workload.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 2
#: versions this build reads (v1 messages are upgraded with the v2 defaults)
READABLE_VERSIONS = (1, 2)

#: largest time on the stack clock (seconds): wall epoch seconds x time scale up to ~5,000
MAX_TIME_S = 1e13
#: largest duration (seconds) a latency field may carry: any difference of two stack times
MAX_DURATION_S = MAX_TIME_S
MAX_TOKENS = 1_000_000
#: prompt_text characters (orjson escapes a control character as 6 bytes: 6 x 2**16 = 384 KiB)
MAX_PROMPT_TEXT = 65_536
#: prefix block ids: 16,384 blocks of 16 tokens = 262k-token prompts; ids <= 2**53 (17 bytes each: 272 KiB)
MAX_PREFIX_IDS = 16_384
MAX_PREFIX_ID = 2**53
MAX_FEATURES = 4_096
MAX_NAME = 128
MAX_REASON = 2_000
#: a dead letter carries at most this many bytes of the original (base64: x 4/3)
MAX_DEAD_LETTER_ORIGINAL = 64 * 1024

Time = Annotated[float, Field(ge=0.0, le=MAX_TIME_S)]
Duration = Annotated[float, Field(ge=0.0, le=MAX_DURATION_S)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
Reason = Annotated[str, Field(max_length=MAX_REASON)]


class Message(BaseModel):
    """Base of every wire message: strict about types, tolerant of unknown keys
    (so a newer producer that adds an optional field does not break an older
    consumer), frozen once built."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False, allow_inf_nan=False)

    v: Literal[1, 2] = SCHEMA_VERSION


class Request(Message):
    """An inference request as the load generator publishes it (topic ``requests``).

    ``output_tokens`` is the *oracle* output length: simulated workers need it to
    know when the request finishes. The router must never read it — it converts a
    ``Request`` into a ``phaser.types.Job`` (which has no such field) before any
    predictor or policy sees it.
    """

    id: str = Field(min_length=1, max_length=256)
    arrival_s: Time = Field(description="stack-clock time the request entered the system")
    prompt_tokens: int = Field(ge=1, le=MAX_TOKENS)
    task: str | None = Field(default=None, max_length=MAX_NAME, description="task or application tag, if known")
    prefix_ids: list[Annotated[int, Field(ge=0, le=MAX_PREFIX_ID)]] | None = Field(
        default=None, max_length=MAX_PREFIX_IDS,
        description="one id per prefix block (prefix_block_tokens tokens); equal leading ids = shared prefix"
    )
    prompt_text: str | None = Field(default=None, max_length=MAX_PROMPT_TEXT,
                                    description="optional prompt text (predictor input)")
    output_tokens: int | None = Field(
        default=None, ge=1, le=MAX_TOKENS, description="ORACLE output length, for simulated workers only"
    )


class Assignment(Message):
    """The router's decision (topic ``assignments``, partition = instance)."""

    request: Request
    instance: int = Field(ge=0, le=65_535)
    policy: Name
    policy_version: int = Field(ge=0, le=2**31 - 1)
    decided_s: Time = Field(description="stack-clock time of the decision")
    router_wait_s: Duration = Field(description="time the request waited in the router queue")
    predicted_tokens: float = Field(ge=0.0, le=MAX_TOKENS, description="output-length predictor's expected length")
    predicted_bucket: int = Field(ge=0, le=2)
    features: list[Annotated[float, Field(ge=-1e9, le=1e9)]] | None = Field(
        default=None, max_length=MAX_FEATURES, description="the feature vector the policy saw (RL policies)")
    action: int = Field(ge=-1, le=65_535, description="the action taken (instance index) when features were recorded, else -1")
    epoch: int = Field(default=0, ge=0, le=1_000, description=(
        "0 for the first routing of a request, +1 for each re-route after a failover; a worker serves "
        "only the newest epoch it has seen for an id (older ones are stale and dropped)"))
    revoked: bool = Field(default=False, description=(
        "a fence notice, not work: the router re-routed this request away from ``instance`` (after a "
        "failover) under ``epoch``; a worker holding an older epoch of it drops it without answering"))
    router: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.-]*$", description=(
        "the router replica that decided (``phaser router --replica-id``); '' for a router running alone. "
        "Replicas apply each other's decisions to their cluster view and skip their own"))


class Completion(Message):
    """One finished request (topic ``completions``).

    ``status`` (v2): ``ok`` — served; ``rejected`` — the instance refused it
    (longer than the model's context or than its whole KV cache; the engine's
    refusal for real engines), never retried; ``error`` — it failed, e.g. after
    the stated number of re-routes. A non-``ok`` completion says why in
    ``reason`` and may have no output tokens; its latency fields are 0 except
    ``e2e_s`` (time until the verdict). Every consumer that computes latency
    statistics counts only ``ok`` completions.
    """

    request_id: str = Field(min_length=1, max_length=256)
    instance: int = Field(ge=0, le=65_535)
    task: str | None = Field(default=None, max_length=MAX_NAME)
    policy: Name = ""
    policy_version: int = Field(default=0, ge=0, le=2**31 - 1)
    status: Literal["ok", "rejected", "error"] = "ok"
    reason: Reason = ""
    epoch: int = Field(default=0, ge=0, le=1_000, description="the epoch of the assignment that was served")
    arrival_s: Time
    admitted_s: Time = Field(description="first admission into the instance's running batch")
    first_token_s: Time
    finish_s: Time
    ttft_s: Duration
    tbt_mean_s: Duration
    tbt_p99_s: Duration
    tbt_max_s: Duration
    e2e_s: Duration
    router_wait_s: Duration
    queue_wait_s: Duration = Field(description="time waiting in the instance queue before first admission")
    preemptions: int = Field(ge=0, le=MAX_TOKENS)
    prompt_tokens: int = Field(ge=1, le=MAX_TOKENS)
    output_tokens: int = Field(ge=0, le=MAX_TOKENS, description="tokens produced (0 possible unless status is ok)")
    cached_prompt_tokens: int = Field(default=0, ge=0, le=MAX_TOKENS, description="prompt tokens served from the prefix cache")


class InstanceStatus(Message):
    """Heartbeat of one instance (topic ``instance-status``).

    ``health`` (v2): ``ok``, or ``unhealthy`` when the worker knows its
    instance cannot serve (its engine failed, its circuit opened); the router
    then treats the instance as down exactly as when its heartbeats stop.

    ``unknown`` and ``telemetry_age_s`` (added within v2, optional, ignored by
    older readers): a worker in front of a real engine fills the fields from
    the engine's own telemetry (``phaser.backends.telemetry``) and lists here
    the ones the engine does not report, rather than inventing them.
    """

    instance: int = Field(ge=0, le=65_535)
    ts_s: Time
    profile: Name
    health: Literal["ok", "unhealthy"] = "ok"
    reason: Reason = ""
    running_prefill: int = Field(ge=0, le=MAX_TOKENS, description="running requests still in prefill (incl. chunked)")
    running_decode: int = Field(ge=0, le=MAX_TOKENS)
    waiting: int = Field(ge=0, le=MAX_TOKENS, description="requests in the instance's waiting queue")
    kv_blocks_used: int = Field(ge=0, le=2**40)
    kv_blocks_total: int = Field(ge=1, le=2**40)
    tokens_in_flight: int = Field(ge=0, le=2**40, description="KV tokens held by running requests")
    decode_tokens_left: int = Field(default=0, ge=0, le=2**40,
                                    description="oracle-free estimate is the router's; this is 0 unless known")
    completed: int = Field(default=0, ge=0, le=2**53, description="requests completed since the worker started")
    unknown: list[Name] = Field(default_factory=list, max_length=16,
                                description="fields the instance's telemetry does not report (their values are "
                                            "placeholders the router must not use); empty for simulated instances")
    telemetry_age_s: Duration = Field(default=0.0, description="age of the engine telemetry this heartbeat carries")


class PolicyUpdate(Message):
    """A policy lifecycle event (topic ``policy-updates``).

    ``kind="profiles"`` (added within v2): the trainer's digital twin fitted the
    hardware each instance really runs (``phaser.twin``) and tells the routers
    to plan with it; ``profiles`` lists one profile name per instance and
    ``version`` is 0.
    """

    kind: Literal["published", "canary", "promoted", "rolled_back", "pinned", "refused", "profiles"]
    version: int = Field(ge=0, le=2**31 - 1)
    path: str = Field(default="", max_length=4096)
    checksum: str = Field(default="", max_length=MAX_NAME)
    reason: Reason = ""
    ts_s: Time
    stats: dict[Name, Annotated[float, Field(ge=-1e12, le=1e12)]] = Field(default_factory=dict, max_length=64)
    profiles: list[Name] = Field(default_factory=list, max_length=65_536,
                                 description="kind=profiles: the fitted profile of every instance, in instance order")


class DeadLetter(Message):
    """A message that could not be used, with why (topic ``dead-letters``)."""

    topic: Name
    reason: Reason
    original_b64: str = Field(max_length=(MAX_DEAD_LETTER_ORIGINAL + 2) // 3 * 4,
                              description="the original bytes (at most MAX_DEAD_LETTER_ORIGINAL of them), base64")
    original_bytes: int = Field(default=-1, ge=-1, le=2**40, description="size of the original record (-1: unknown)")
    truncated: bool = Field(default=False, description="original_b64 holds only the first bytes of the original")
    partition: int = Field(default=-1, ge=-1, le=2**31 - 1)
    offset: int = Field(default=-1, ge=-1, le=2**63 - 1)
    ts_s: Time
    source: Name = Field(default="", description="which service dead-lettered it")


#: topic name -> message type. One message type per topic.
TOPICS: dict[str, type[Message]] = {
    "requests": Request,
    "assignments": Assignment,
    "completions": Completion,
    "instance-status": InstanceStatus,
    "policy-updates": PolicyUpdate,
    "dead-letters": DeadLetter,
}
