"""The column layout of ``ClusterView.arrays()`` and the one place its time-dependent
estimates are computed, compiled with numba.

Each instance is one column of a ``len(ROW_FIELDS) × instances`` float matrix: the state its
``InstanceView`` properties are computed from, at its own clock ``t0`` (decode clock ``D0``;
``inv_rate`` decode iterations per second while it decodes, else 0), its profile's
coefficients, and the parts of the iteration-time model that only change with the decoding
count ``n``: ``lin0 = max(floor, a + b·n)``, ``bn = a + b·n``, ``dlin = max(floor, a + b·(n+1)) − lin0``,
``en = e·n``; and the router's exact counts the RL features read (requests in prefill, decoding
requests per predicted-length bucket, outstanding requests).

``state_at(m, k, now)`` moves column ``k``'s decode clock on to ``now`` and returns the
estimates a policy reads (the formulas of ``InstanceView``'s properties). Vectorised policies
(``phaser.policies.mixing``) call it inside their own compiled loop over the instances, so a
decision costs one compiled call, not dozens of small numpy operations; ``states_at`` fills
all of them at once for Python callers.

The kernels are plain Python run by numba's ``njit`` (``NUMBA_DISABLE_JIT=1`` runs the same
source uncompiled); ``cache=True`` keeps the machine code next to this file, so only the first
process on a machine pays the compile.
"""

from __future__ import annotations

import numpy as np
from numba import njit

ROW_FIELDS = ("t0", "D0", "n", "rate", "inv_rate", "prompt_dec", "sum_d0", "sum_finish", "pred_prefill",
              "prompt_all", "kv_offset", "cap", "prefill_free_at", "full", "top", "pf_done", "pf_tail",
              "floor", "a", "b", "c", "d", "e", "g", "lin0", "bn", "dlin", "en",
              "in_prefill", "b0", "b1", "b2", "outstanding")

# the row indices, as module constants numba folds into the machine code
(T0, D0, N, RATE, INV_RATE, PROMPT_DEC, SUM_D0, SUM_FINISH, PRED_PREFILL, PROMPT_ALL, KV_OFFSET, CAP,
 PREFILL_FREE_AT, FULL, TOP, PF_DONE, PF_TAIL, FLOOR, A, B, C, D, E, G, LIN0, BN, DLIN, EN,
 IN_PREFILL, B0, B1, B2, OUTSTANDING) = range(len(ROW_FIELDS))

#: what ``state_at`` returns, in order
STATE_FIELDS = ("decode_kv_tokens", "decode_tokens_left", "free_kv_tokens", "prefill_backlog_s", "to_completion_s")


@njit(cache=True)
def state_at(m, k, now):
    """Column ``k``'s estimates at ``now`` (``STATE_FIELDS``): KV tokens held by decoding
    requests, predicted decode tokens left, free KV tokens (heartbeat-corrected, at most the
    capacity), seconds of prefill backlog, and seconds to the earliest completion (0 when idle)."""
    n = m[N, k]
    dclock = m[D0, k] + (now - m[T0, k]) * m[INV_RATE, k]
    nd = n * dclock
    kv = m[PROMPT_DEC, k] + max(0.0, nd - m[SUM_D0, k])
    left = max(0.0, m[SUM_FINISH, k] - nd) + m[PRED_PREFILL, k]
    cap = m[CAP, k]
    free = min(cap, max(0.0, cap - (m[PROMPT_ALL, k] - m[PROMPT_DEC, k] + kv) - m[KV_OFFSET, k]))
    backlog = max(0.0, m[PREFILL_FREE_AT, k] - now)
    if n > 0:
        to_done = max(0.0, m[TOP, k] - dclock) * m[RATE, k]
    else:
        to_done = max(0.0, m[PF_DONE, k] - now) + m[PF_TAIL, k]
    return kv, left, free, backlog, to_done


@njit(cache=True)
def states_at(m, now, out):
    """``state_at`` for every column, into ``out`` (``len(STATE_FIELDS)`` × instances)."""
    for k in range(m.shape[1]):
        out[0, k], out[1, k], out[2, k], out[3, k], out[4, k] = state_at(m, k, now)
    return out


def empty_states(n: int) -> np.ndarray:
    return np.empty((len(STATE_FIELDS), n))
