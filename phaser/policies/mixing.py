"""The mixing penalty: what placing a request on an instance costs, in
seconds of latency added across requests, split into a prefill and a decode
part. Used by the ``workload-aware`` policy, and by the RL reward and the HuRL
guidance (``phaser/rl``).

The paper (Jain et al., arXiv 2408.13510) describes the heuristic only in
words: a prefill impact that grows with the new prompt's tokens and the decode
tokens already in flight on the candidate, counted only above a threshold ε; a
decode impact that grows with the number of requests there; combined as
α·prefill + (1−α)·decode, α = 0.5. The equations were not published; these are
derived from the engine's iteration-time model

    t_iter = max(floor, a + b·n_tokens) + c·prefill_attn_work + d·decode_kv_tokens

(``phaser/engine/profiles.py``). For a job with prompt ``p`` and predicted
output ``o`` on instance ``m`` with ``n`` requests decoding over ``K`` KV tokens:

**Prefill impact** (seconds)
  * ``stall = t_iter(n + p, p²/2, K) − t_iter(n, 0, K)``: how much longer the
    iteration that carries the newcomer's prefill is than a plain decode step.
    Below the knee of ``max(floor, a + b·n)`` a short prompt is nearly free;
    a long prompt stretches the step by about ``b·p`` plus its attention.
  * inflicted on others: ``n · stall`` (every decoding request waits it out),
    counted only when ``stall > ε`` (default ε = 5 ms, about one seventh of a
    V100 decode step of 34 ms from the paper's profiling: shorter stalls are
    within iteration-time noise);
  * suffered by the newcomer: the prefill backlog already routed there plus its
    own prefill time (this term differs between instances only through the
    backlog and heterogeneous profiles).

**Decode impact** (seconds)
  * the newcomer's own decode: ``o · step(n+1, K + p + o/2)``;
  * the slowdown it inflicts: ``(step(n+1, ·) − step(n, K)) · min(L, n·o)``,
    where ``L`` is the predicted decode tokens left there (each other request
    is slowed for the overlap of its remaining tokens with the newcomer's);
  * capacity: when the instance cannot start it now (batch at
    ``max_num_seqs`` or the KV estimate short of ``p + o``) the newcomer waits
    for the instance's earliest completion.

Both parts are latency, so α = 0.5 weighs them equally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from phaser.cluster.view import ClusterView, InstanceView
    from phaser.types import Job

#: Paper's mixing weight.
ALPHA = 0.5
#: Stall threshold in seconds (see module docstring).
EPS_S = 0.005


def prefill_impact(job: "Job", inst: "InstanceView", now: float, eps: float = EPS_S) -> float:
    prof = inst.profile
    p = job.prompt_tokens
    own = inst.prefill_backlog_s(now) + prof.prefill_time(p)
    n = inst.decoding
    if n == 0:
        return own
    kv = inst.decode_kv_tokens
    stall = prof.iteration_time(n + p, p * p / 2.0, kv, n, 1) - prof.iteration_time(n, 0.0, kv, n, 0)
    return own + (n * stall if stall > eps else 0.0)


def decode_impact(job: "Job", inst: "InstanceView", now: float) -> float:
    prof = inst.profile
    p = job.prompt_tokens
    o = max(1.0, job.predicted_tokens)
    n = inst.decoding
    kv = inst.decode_kv_tokens
    step1 = prof.decode_step_time(n + 1, kv + p + o / 2.0)
    cost = o * step1
    if n:
        step0 = prof.decode_step_time(n, kv)
        cost += max(0.0, step1 - step0) * min(inst.decode_tokens_left, n * o)
    if inst.outstanding >= prof.max_num_seqs or inst.free_kv_tokens < p + o:
        ec = inst.earliest_completion_s
        if ec != float("inf"):
            cost += max(0.0, ec - now)
    return cost


def penalty_terms(job: "Job", inst: "InstanceView", now: float, eps: float = EPS_S) -> tuple[float, float]:
    """(prefill impact, decode impact) in seconds."""
    return prefill_impact(job, inst, now, eps), decode_impact(job, inst, now)


def mixing_penalty(job: "Job", inst: "InstanceView", now: float, alpha: float = ALPHA, eps: float = EPS_S) -> float:
    """α·prefill impact + (1−α)·decode impact of placing ``job`` on ``inst`` at ``now``."""
    pf, dc = penalty_terms(job, inst, now, eps)
    return alpha * pf + (1.0 - alpha) * dc


def penalties(job: "Job", view: "ClusterView", alpha: float = ALPHA, eps: float = EPS_S) -> list[float]:
    """The mixing penalty of ``job`` on every instance of ``view`` (at ``view.now``)."""
    now = view.now
    return [mixing_penalty(job, inst, now, alpha, eps) for inst in view.instances]
