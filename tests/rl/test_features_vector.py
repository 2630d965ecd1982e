"""The encoder reads the view's columns (``ClusterView.arrays()``); its raw features must be
the feature table's definitions written against ``InstanceView``'s own properties, for every
spec version, on views driven through random assignments (with shared prefixes),
completions, heartbeats and clock moves on mixed hardware."""

import math
import random

import pytest

from phaser.cluster.view import ClusterView
from phaser.engine.kv_cache import PREFIX_BLOCK_TOKENS
from phaser.engine.profiles import get_profile
from phaser.rl.features import Encoder, FeatureSpec
from phaser.types import Job
from tests._random_view import drive


def reference(job, view, version):
    """The module docstring's tables, one instance at a time, from public properties."""
    now, prompt = view.now, int(job.prompt_tokens)
    out = [float(view.router_queue_len), float(prompt), float(job.predicted_bucket)]
    for inst in view.instances:
        cap = inst.kv_capacity_tokens
        nd = inst.earliest_completion_s
        out += [inst.in_prefill, *inst.decode_buckets, inst.free_kv_tokens / cap,
                0.0 if math.isinf(nd) else max(0.0, nd - now)]
        if version >= 2:
            out += [inst.prefill_backlog_s(now), inst.decode_kv_tokens / cap]
        if version >= 3:
            cached = min(prompt, inst.prefix_hits(job.prefix_ids) * PREFIX_BLOCK_TOKENS) if job.prefix_ids else 0
            prof = inst.profile
            out += [cached / prompt if prompt else 0.0,
                    prof.prefill_time(prompt - cached) if prompt > cached else 0.0,
                    inst.step_time_s if inst.decoding else prof.decode_step_time(1, prompt),
                    inst.outstanding]
    return out


@pytest.mark.parametrize("seed", range(4))
def test_encoder_columns_match_the_feature_tables(seed):
    rng = random.Random(seed)
    names = ["v100-16gb-llama2-7b", "a100-llama2-7b", "a10g-llama2-7b", "h100-llama3-8b"]
    profiles = [get_profile(rng.choice(names)) for _ in range(10)]
    v = ClusterView(profiles)
    encs = {ver: Encoder(FeatureSpec(len(profiles), ver)) for ver in (1, 2, 3)}
    checked = 0

    def new_job(k, t, rng):
        return Job(id=f"r{k}", arrival_s=t, prompt_tokens=rng.choice([8, 200, 1500, 3000]),
                   predicted_tokens=rng.choice([0.0, 20.0, 300.0, 3000.0]), predicted_bucket=rng.randrange(3),
                   prefix_ids=tuple(range(rng.randrange(4))))

    for k, t in drive(v, profiles, rng, 1200, new_job):
        v.router_queue_len = rng.randrange(600)
        if k % 5 == 0:
            j = Job(id="probe", arrival_s=t, prompt_tokens=rng.choice([0, 1, 700, 2500]),
                    predicted_tokens=50.0, predicted_bucket=rng.randrange(3),
                    prefix_ids=tuple(range(rng.choice([0, 2, 6]))))
            for ver, enc in encs.items():
                assert enc.raw(j, v).tolist() == pytest.approx(reference(j, v, ver), rel=1e-9, abs=1e-9)
            checked += 1
    assert checked == 240
    # the run visited decoding, prefill-only and idle instances and cache hits
    assert any(inst.decoding for inst in v.instances) and any(inst.in_prefill for inst in v.instances)
