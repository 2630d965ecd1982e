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
from protos.messages import InstanceStatus
from phaser.types import Job


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
    live: list[tuple[str, int]] = []
    t, checked = 0.0, 0
    for k in range(1200):
        t += rng.expovariate(40.0)
        v.advance_to(t)
        v.router_queue_len = rng.randrange(600)
        r = rng.random()
        if r < 0.55:
            j = Job(id=f"r{k}", arrival_s=t, prompt_tokens=rng.choice([8, 200, 1500, 3000]),
                    predicted_tokens=rng.choice([0.0, 20.0, 300.0, 3000.0]), predicted_bucket=rng.randrange(3),
                    prefix_ids=tuple(range(rng.randrange(4))))
            i = rng.randrange(len(profiles))
            v.on_assign(j, i, t)
            live.append((j.id, i))
        elif r < 0.85 and live:
            rid, i = live.pop(rng.randrange(len(live)))
            v.on_complete(rid, i, t)
        else:
            i = rng.randrange(len(profiles))
            tot = profiles[i].kv_blocks_total
            v.on_status(InstanceStatus(instance=i, ts_s=t, profile=profiles[i].name, running_prefill=0,
                                       running_decode=0, waiting=0, kv_blocks_used=rng.randrange(tot + 1),
                                       kv_blocks_total=tot, tokens_in_flight=0), t)
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
