"""min-min: the instance where the request is estimated to finish earliest,
with its output length taken as the predicted bucket's upper bound (paper's
baseline; on equal instances this is close to shortest-job-first placement).

Estimated finish on instance m = prefill backlog there + own prefill time +
``BUCKET_UPPER[bucket]`` decode steps at the batch it would join
(``decode_step_time(n + 1, K + p)``), plus, when the instance cannot start it
now (batch full or KV short), the wait for its earliest completion."""

from __future__ import annotations

from phaser.policies._select import RotatingArg
from phaser.policies.base import register
from phaser.types import BUCKET_UPPER


def estimated_finish(job, inst, now: float) -> float:
    prof = inst.profile
    p = job.prompt_tokens
    o = BUCKET_UPPER[job.predicted_bucket]
    t = inst.prefill_backlog_s(now) + prof.prefill_time(p)
    t += o * prof.decode_step_time(inst.decoding + 1, inst.decode_kv_tokens + p)
    if inst.outstanding >= prof.max_num_seqs or inst.free_kv_tokens < p + o:
        ec = inst.earliest_completion_s
        if ec != float("inf"):
            t += max(0.0, ec - now)
    return t


class MinMin:
    name = "min-min"
    version = 0

    def __init__(self, n_instances: int):
        self._pick = RotatingArg()

    def decide(self, job, view) -> int:
        now = view.now
        return self._pick.argmin([estimated_finish(job, i, now) for i in view.instances])


@register("min-min")
def make(n_instances: int, seed: int = 0, **_):
    return MinMin(n_instances)
