"""The vectorised mixing penalty (``ClusterView.arrays`` + ``mixing.impacts``) equals the
module docstring's formulas written against ``InstanceView``'s own properties, on views
driven through random assignments, completions, heartbeats and clock moves -- busy,
idle, in-prefill-only, full-batch and KV-short instances, mixed hardware."""

import random

import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.profiles import get_profile
from phaser.policies import make_policy
from phaser.policies.mixing import EPS_S, penalties
from phaser.types import Job
from tests._random_view import drive


def reference(job, inst, now, alpha=0.5, eps=EPS_S):
    """The docstring's formulas, one instance, from its public properties."""
    prof = inst.profile
    p, o, n, kv = job.prompt_tokens, max(1.0, job.predicted_tokens), inst.decoding, inst.decode_kv_tokens
    pf = inst.prefill_backlog_s(now) + prof.prefill_time(p)
    if n:
        stall = prof.iteration_time(n + p, p * p / 2.0, kv, n, 1) - prof.iteration_time(n, 0.0, kv, n, 0)
        pf += n * stall if stall > eps else 0.0
    step1 = prof.decode_step_time(n + 1, kv + p + o / 2.0)
    dc = o * step1
    if n:
        dc += max(0.0, step1 - prof.decode_step_time(n, kv)) * min(inst.decode_tokens_left, n * o)
    if inst.outstanding >= prof.max_num_seqs or inst.free_kv_tokens < p + o:
        ec = inst.earliest_completion_s
        if ec != float("inf"):
            dc += max(0.0, ec - now)
    return alpha * pf + (1 - alpha) * dc


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_penalty_matches_the_formulas(seed):
    rng = random.Random(seed)
    names = ["v100-16gb-llama2-7b", "a100-llama2-7b", "a10g-llama2-7b", "h100-llama3-8b"]
    profiles = [get_profile(rng.choice(names)) for _ in range(12)]
    v = ClusterView(profiles)
    checked = 0

    def new_job(k, t, rng):
        return Job(id=f"r{k}", arrival_s=t, prompt_tokens=rng.choice([8, 200, 1500, 3000]),
                   predicted_tokens=rng.choice([0.0, 20.0, 300.0, 900.0]), predicted_bucket=0, prefix_ids=())

    for k, t in drive(v, profiles, rng, 1500, new_job):
        if k % 7 == 0:
            j = Job(id="probe", arrival_s=t, prompt_tokens=rng.choice([1, 64, 700, 2500]),
                    predicted_tokens=rng.choice([1.0, 50.0, 800.0]), predicted_bucket=0, prefix_ids=())
            want = [reference(j, inst, v.now) for inst in v.instances]
            assert penalties(j, v) == pytest.approx(want, rel=1e-9, abs=1e-12)
            checked += 1
    assert checked > 200
    # the run went where the capacity term matters: some instance was KV-short or full
    assert any(inst.free_kv_tokens < 3000 for inst in v.instances)


def test_workload_aware_ties_rotate_like_the_scalar_argmin():
    v = ClusterView([get_profile("a100-llama2-7b")] * 4)
    pol = make_policy("workload-aware", 4)
    j = Job(id="x", arrival_s=0.0, prompt_tokens=100, predicted_tokens=50.0, predicted_bucket=0, prefix_ids=())
    picks = [pol.decide(j, v) for _ in range(6)]
    assert picks == [0, 1, 2, 3, 0, 1]  # an idle symmetric cluster: every instance ties
    assert pol.ties == [1, 2, 3, 0]  # the last pick first, then in rotation


def test_argmin_array_is_argmin():
    import numpy as np

    from phaser.policies._select import RotatingArg

    rng = random.Random(3)
    a, b = RotatingArg(), RotatingArg()
    for _ in range(300):
        vals = [float(rng.choice([1, 2, 3])) for _ in range(rng.randint(1, 9))]
        a._start = b._start = rng.randrange(len(vals))
        assert a.argmin(vals) == b.argmin_array(np.array(vals))
        assert a.last_ties == b.last_ties
