"""A tiny deterministic latency profile for hand-built cluster views: numbers
chosen so expected values are easy to compute by hand in the tests. It is the
engine's iteration-time model (``phaser.engine.profiles.LatencyProfile``) with
only a floor and a per-token cost: every iteration takes
``max(step_s, tokens · prefill_s_per_token)``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeProfile:
    name: str = "fake"
    prefill_s_per_token: float = 1e-3     # 100 prompt tokens -> 0.1 s prefill
    step_s: float = 0.01                  # every decode iteration (below 10 requests) 10 ms
    kv_capacity_tokens: int = 10_000
    block_tokens: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 4096
    #: the coefficients of the iteration-time model (vectorised policies read these)
    a_s: float = 0.0
    c_s: float = 0.0
    d_s: float = 0.0
    e_s: float = 0.0
    g_s: float = 0.0

    @property
    def floor_s(self) -> float:
        return self.step_s

    @property
    def b_s(self) -> float:
        return self.prefill_s_per_token

    @property
    def kv_blocks_total(self) -> int:
        return self.kv_capacity_tokens // self.block_tokens

    def iteration_time(self, n_tokens, prefill_attn_work, decode_kv_tokens, n_decode=0, n_chunks=0) -> float:
        return (max(self.floor_s, self.a_s + self.b_s * n_tokens) + self.c_s * prefill_attn_work
                + self.d_s * decode_kv_tokens + self.e_s * n_decode + self.g_s * n_chunks)

    def prefill_time(self, prompt_tokens: int) -> float:
        return self.iteration_time(prompt_tokens, prompt_tokens * prompt_tokens / 2.0, 0, 0, 1)

    def decode_step_time(self, batch: int, kv_tokens: float) -> float:
        return self.iteration_time(batch, 0.0, kv_tokens, batch, 0)
