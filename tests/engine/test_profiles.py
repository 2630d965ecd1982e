"""Latency profiles: calibration against the vendored operator tables, the
paper's V100 numbers, memory sizing, and lookup errors."""

from __future__ import annotations

import pytest

from phaser.engine.calibration import linear_mape, linear_ops
from phaser.engine.profiles import PROFILES, get_profile
from phaser.errors import PhaserError

CALIBRATED = ["a100-llama2-7b", "h100-llama2-7b", "a100-llama3-8b", "h100-llama3-8b"]


@pytest.mark.parametrize("name", CALIBRATED)
def test_linear_ops_mape_within_10_percent(name):
    p = get_profile(name)
    n, _ = linear_ops(name)
    assert n.size >= 200  # the table is really there
    assert linear_mape(p) <= 0.10


def test_mape_would_catch_a_wrong_profile():
    # the A100 coefficients do not describe the H100 table: the check can fail
    a100 = get_profile("a100-llama2-7b")
    import dataclasses

    wrong = dataclasses.replace(a100, name="h100-llama2-7b")
    assert linear_mape(wrong) > 0.10


def test_all_five_profiles_and_contract_fields():
    assert set(PROFILES) == {"v100-llama2-7b", *CALIBRATED}
    for p in PROFILES.values():
        assert p.block_tokens == 16 and p.max_num_seqs == 256 and p.gpu_mem_util == 0.9
        assert p.kv_capacity_tokens == p.kv_blocks_total * 16
        expect = int((p.gpu_mem_bytes * 0.9 - p.weight_bytes) // (p.kv_bytes_per_token * 16))
        assert p.kv_blocks_total == expect > 1000
        assert p.c_s > 0 and p.d_s > 0 and p.floor_s > 0


def test_iteration_time_formula():
    p = get_profile("a100-llama3-8b")
    assert p.iteration_time(1, 0, 0) == pytest.approx(p.floor_s)
    big = p.iteration_time(4096, 0, 0)
    assert big == pytest.approx(p.a_s + p.b_s * 4096)
    assert p.iteration_time(4096, 1e6, 5000) == pytest.approx(big + p.c_s * 1e6 + p.d_s * 5000)
    assert p.prefill_time(2000) == pytest.approx(p.iteration_time(2000, 2000 * 1000, 0))
    assert p.decode_step_time(8, 4000) == pytest.approx(p.iteration_time(8, 0, 4000))
    # attention is quadratic: doubling a long prompt more than doubles the attention part
    att = lambda n: p.prefill_time(n) - max(p.floor_s, p.a_s + p.b_s * n)  # noqa: E731
    assert att(8000) == pytest.approx(4 * att(4000))


def test_v100_matches_the_papers_profiling():
    p = get_profile("v100-llama2-7b")
    # ≈ 3.2e-4 s per prompt token (prompts ≤ 1,000 tokens in the paper)
    for n in (200, 500, 1000):
        assert p.prefill_time(n) / n == pytest.approx(3.2e-4, rel=0.05)
    # a small decode batch ≈ 34 ms; 34–37 ms over 2–6 k KV tokens
    assert p.decode_step_time(4, 2000) == pytest.approx(0.034, rel=0.01)
    assert p.decode_step_time(8, 6000) == pytest.approx(0.037, rel=0.01)
    assert p.gpu_mem_bytes == 32 * 2**30


def test_unknown_profile_lists_names():
    with pytest.raises(PhaserError, match="unknown profile 'b200'.*a100-llama2-7b.*v100-llama2-7b"):
        get_profile("b200")
