"""KV block accounting and the prefix cache of one instance.

Blocks: the KV cache is ``total`` fixed-size blocks of ``block_tokens`` tokens
(vLLM's PagedAttention layout). A running request holds
``ceil(kv_tokens / block_tokens)`` blocks; ``used`` is their sum and never
exceeds ``total`` (the engine preempts rather than over-allocate).

Admission watermark: like vLLM's ``BlockSpaceManager.can_allocate``, a new
prefill is admitted only if it leaves at least ``watermark_blocks`` (1 % of the
cache, vLLM's default ``watermark=0.01``) free, so decodes that are about to
cross a block boundary are not starved straight away.

Prefix cache (Mooncake-style ``hash_ids``): a request may carry ``prefix_ids``,
one id per ``PREFIX_BLOCK_TOKENS`` = 512 prompt tokens; equal leading ids mean
a shared prefix. After a request's prefill, the ids of its full 512-token
prompt blocks are kept in an LRU, each occupying ``512 / block_tokens`` blocks
of otherwise *free* memory: cached prefixes never cost a running request a
block — an allocation that needs their room evicts least recently used ids
first. A new request whose leading ids are cached skips that prefill work.
Decision (documented simplification): a running request that hit the cache
still accounts its whole context in ``used`` (the shared physical blocks are
counted twice, once as cache, once as the request's), which is conservative on
memory and keeps the accounting O(1).
"""

from __future__ import annotations

from collections import OrderedDict

#: tokens per prefix id (Mooncake trace convention: one hash id per 512-token block)
PREFIX_BLOCK_TOKENS = 512
#: vLLM's default admission watermark (fraction of all blocks kept free)
WATERMARK = 0.01



def leading_run(prefix_ids, cached) -> int:
    """Length of the leading run of ``prefix_ids`` found in ``cached`` (any
    container): a prefix is only reusable up to its first missing block. Shared
    by the engine's cache and the router's view of what each instance holds."""
    n = 0
    for pid in prefix_ids:
        if pid not in cached:
            break
        n += 1
    return n

class KVCache:
    __slots__ = ("total", "used", "block_tokens", "watermark_blocks", "blocks_per_prefix", "_lru", "cached_blocks")

    def __init__(self, total_blocks: int, block_tokens: int = 16, watermark: float = WATERMARK):
        self.total = int(total_blocks)
        self.used = 0
        self.block_tokens = block_tokens
        self.watermark_blocks = int(watermark * self.total)
        self.blocks_per_prefix = max(1, PREFIX_BLOCK_TOKENS // block_tokens)
        self._lru: OrderedDict[int, None] = OrderedDict()
        self.cached_blocks = 0

    # -- blocks ---------------------------------------------------------------
    @property
    def available(self) -> int:
        """Blocks an allocation may take: free + evictable prefix cache."""
        return self.total - self.used

    def can_admit(self, blocks: int) -> bool:
        return self.total - self.used - blocks >= self.watermark_blocks

    def allocate(self, blocks: int) -> None:
        if blocks > self.total - self.used:
            raise AssertionError(f"KV over-allocation: {blocks} > {self.total - self.used} available")
        self.used += blocks
        self._evict_to_fit()

    def release(self, blocks: int) -> None:
        self.used -= blocks

    def _evict_to_fit(self) -> None:
        lru = self._lru
        while self.used + self.cached_blocks > self.total and lru:
            lru.popitem(last=False)
            self.cached_blocks -= self.blocks_per_prefix

    # -- prefix cache ---------------------------------------------------------
    def prefix_hits(self, prefix_ids) -> int:
        """How many leading ids of ``prefix_ids`` are cached (no LRU touch)."""
        return leading_run(prefix_ids, self._lru)

    def touch(self, prefix_ids, n: int) -> None:
        for pid in prefix_ids[:n]:
            self._lru.move_to_end(pid)

    def insert(self, prefix_ids) -> None:
        """Cache ``prefix_ids`` (most recently used), evicting LRU ids to fit."""
        lru = self._lru
        for pid in prefix_ids:
            if pid in lru:
                lru.move_to_end(pid)
            else:
                lru[pid] = None
                self.cached_blocks += self.blocks_per_prefix
        self._evict_to_fit()

    def __contains__(self, pid) -> bool:
        return pid in self._lru
