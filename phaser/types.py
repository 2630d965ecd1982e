"""Core value types shared by the router, the simulator and the policies.

A workload item is a ``protos.Request`` (the wire type; it carries the oracle
``output_tokens`` that only simulated GPUs may read). What a router, predictor
output aside, knows about a request is a ``Job``: the conversion drops the
oracle, so no policy can read the true output length — there is no field to
read (``slots=True`` also forbids adding one).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Decode-length buckets used by the cluster view, the predictor and the RL
#: state (paper): 0 = [0, 256), 1 = [256, 2048), 2 = [2048, inf) output tokens.
BUCKET_EDGES: tuple[int, int] = (256, 2048)
#: Upper bound of each bucket, used where a policy needs "the bucket's upper
#: bound" (min-min). The last bucket is open; 4096 is the cap we assume.
BUCKET_UPPER: tuple[int, int, int] = (256, 2048, 4096)
N_BUCKETS = 3


def bucket_of(tokens: float) -> int:
    if tokens < BUCKET_EDGES[0]:
        return 0
    if tokens < BUCKET_EDGES[1]:
        return 1
    return 2


@dataclass(frozen=True, slots=True)
class Job:
    """A request as the router knows it at decision time (no oracle length)."""

    id: str
    arrival_s: float
    prompt_tokens: int
    task: str | None = None
    prefix_ids: tuple[int, ...] = ()
    predicted_tokens: float = 0.0
    predicted_bucket: int = 0

    @classmethod
    def from_request(cls, req, predicted_tokens: float, predicted_bucket: int) -> "Job":
        """Build from a ``protos.Request`` (or anything with the same public
        fields), deliberately not copying ``output_tokens``."""
        return cls(
            id=req.id,
            arrival_s=req.arrival_s,
            prompt_tokens=req.prompt_tokens,
            task=req.task,
            prefix_ids=tuple(req.prefix_ids or ()),
            predicted_tokens=float(predicted_tokens),
            predicted_bucket=int(predicted_bucket),
        )
