"""A tiny deterministic latency profile for hand-built cluster views: numbers
chosen so expected values are easy to compute by hand in the tests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FakeProfile:
    name: str = "fake"
    prefill_s_per_token: float = 1e-3     # 100 prompt tokens -> 0.1 s prefill
    step_s: float = 0.01                  # every decode iteration 10 ms
    kv_capacity_tokens: int = 10_000
    block_tokens: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 4096

    @property
    def kv_blocks_total(self) -> int:
        return self.kv_capacity_tokens // self.block_tokens

    def prefill_time(self, prompt_tokens: int) -> float:
        return prompt_tokens * self.prefill_s_per_token

    def decode_step_time(self, batch: int, kv_tokens: float) -> float:
        return self.step_s

    def iteration_time(self, n_tokens, prefill_attn_work, decode_kv_tokens, n_decode=0, n_chunks=0) -> float:
        return max(self.step_s, n_tokens * self.prefill_s_per_token)
