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

from numba import njit

from phaser.cluster.columns import A, B, BN, C, D, DLIN, E, EN, FLOOR, FULL, G, LIN0, N, state_at

if TYPE_CHECKING:  # pragma: no cover
    from phaser.cluster.view import ClusterView, InstanceView, ViewArrays
    from phaser.types import Job

#: Paper's mixing weight.
ALPHA = 0.5
#: Stall threshold in seconds (see module docstring).
EPS_S = 0.005


@njit(cache=True)
def _score(m, now, p, o, eps, alpha, pf, dc, pen):
    """The formulas of the module docstring for every column of ``m`` (``ClusterView.arrays()``,
    layout ``phaser.cluster.columns``), into ``pf`` (prefill impact), ``dc`` (decode impact)
    and ``pen`` (α·pf + (1−α)·dc): one compiled loop over the instances."""
    half_pp, half_o = p * p / 2.0, o / 2.0
    for k in range(m.shape[1]):
        kv, left, free, backlog, to_done = state_at(m, k, now)
        fl, n, lin0 = m[FLOOR, k], m[N, k], m[LIN0, k]
        # the iteration-time model t = max(floor, a + b·tokens) + c·work + d·kv + e·decoding + g·chunks;
        # a plain decode step now is lin0 + d·kv + e·n, and kv cancels in both differences
        cw_g = m[C, k] * half_pp + m[G, k]
        bp = m[B, k] * p
        own = backlog + max(fl, m[A, k] + bp) + cw_g  # backlog + prefill_time(p)
        stall = max(fl, m[BN, k] + bp) + cw_g - lin0
        prefill = own + (n * stall if stall > eps else 0.0)  # n = 0: nothing to inflict
        step0 = lin0 + m[D, k] * kv + m[EN, k]
        delta = m[DLIN, k] + m[D, k] * (p + half_o) + m[E, k]  # step(n+1, kv + p + o/2) − step0
        decode = o * (step0 + delta) + max(0.0, delta) * min(left, n * o)
        if m[FULL, k] > 0 or free < p + o:  # it cannot start now: it waits for the earliest completion
            decode += to_done
        pf[k], dc[k] = prefill, decode
        pen[k] = alpha * prefill + (1.0 - alpha) * decode


def _scores(job: "Job", arrays: "ViewArrays", now: float, eps: float, alpha: float):
    import numpy as np

    k = arrays.m.shape[1]
    pf, dc, pen = np.empty(k), np.empty(k), np.empty(k)
    _score(arrays.m, float(now), float(job.prompt_tokens), max(1.0, float(job.predicted_tokens)), float(eps),
           float(alpha), pf, dc, pen)
    return pf, dc, pen


def impacts(job: "Job", arrays: "ViewArrays", now: float, eps: float = EPS_S):
    """(prefill impact, decode impact) of ``job`` on every instance, in seconds: two numpy
    arrays computed from ``ClusterView.arrays()`` at ``now`` (the formulas of the module
    docstring, one compiled pass over the instances)."""
    pf, dc, _ = _scores(job, arrays, now, eps, ALPHA)
    return pf, dc


def _one(job: "Job", inst: "InstanceView", now: float, eps: float):
    import numpy as np

    from phaser.cluster.view import ViewArrays

    pf, dc = impacts(job, ViewArrays(np.array(inst._row(), dtype=float)[:, None]), now, eps)
    return float(pf[0]), float(dc[0])


def prefill_impact(job: "Job", inst: "InstanceView", now: float, eps: float = EPS_S) -> float:
    """The prefill impact of ``job`` on one instance (``impacts`` for that instance alone)."""
    return _one(job, inst, now, eps)[0]


def decode_impact(job: "Job", inst: "InstanceView", now: float) -> float:
    """The decode impact of ``job`` on one instance (``impacts`` for that instance alone)."""
    return _one(job, inst, now, EPS_S)[1]


def penalty_terms(job: "Job", inst: "InstanceView", now: float, eps: float = EPS_S) -> tuple[float, float]:
    """(prefill impact, decode impact) in seconds."""
    return _one(job, inst, now, eps)


def mixing_penalty(job: "Job", inst: "InstanceView", now: float, alpha: float = ALPHA, eps: float = EPS_S) -> float:
    """α·prefill impact + (1−α)·decode impact of placing ``job`` on ``inst`` at ``now``."""
    pf, dc = penalty_terms(job, inst, now, eps)
    return alpha * pf + (1.0 - alpha) * dc


def penalty_array(job: "Job", view: "ClusterView", alpha: float = ALPHA, eps: float = EPS_S):
    """The mixing penalty of ``job`` on every instance of ``view`` (at ``view.now``), a numpy array."""
    return _scores(job, view.arrays(), view.now, eps, alpha)[2]


def penalties(job: "Job", view: "ClusterView", alpha: float = ALPHA, eps: float = EPS_S) -> list[float]:
    """``penalty_array`` as a list of floats."""
    return penalty_array(job, view, alpha, eps).tolist()


def warm() -> None:
    """Compile the scoring kernels now (or load them from numba's cache: about half a second
    the first time in a process), so that the first decision does not pay for it."""
    import numpy as np

    from phaser.cluster.columns import ROW_FIELDS, empty_states, states_at
    from phaser.policies._select import _rotating_argmin

    m, out = np.zeros((len(ROW_FIELDS), 1)), np.zeros(1)
    _score(m, 0.0, 1.0, 1.0, EPS_S, ALPHA, out, out.copy(), out.copy())
    states_at(m, 0.0, empty_states(1))
    _rotating_argmin(out, 0)
