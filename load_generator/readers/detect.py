"""Pick the reader for a trace file from its extension and header.

CSV: ``TIMESTAMP,ContextTokens,...`` -> Azure; ``Timestamp,Model,Request tokens,...``
-> BurstGPT; ``arrival_s,...`` -> simple. JSONL: a first object with
``input_length`` -> Mooncake; with ``prompt_tokens`` -> simple. Length-stats
files (no timestamps) are handled by the registry, which adds arrivals.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from load_generator.readers.common import open_text
from load_generator.trace import Trace
from phaser.errors import PhaserError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


def sniff(path: str | Path) -> str:
    """Return one of 'azure', 'burstgpt', 'simple', 'mooncake', 'lengths'."""
    path = Path(path)
    with open_text(path) as f:
        try:
            first = next((ln for ln in f if ln.strip()), "")
        except UnicodeDecodeError:
            raise PhaserError(f"{path}: not UTF-8 text") from None
    if not first:
        raise PhaserError(f"{path}: file is empty")
    if path.suffix.lower() in JSONL_SUFFIXES or first.lstrip().startswith("{"):
        try:
            obj = orjson.loads(first)
        except orjson.JSONDecodeError:
            raise PhaserError(f"{path}:1: not valid JSON") from None
        if isinstance(obj, dict) and "input_length" in obj:
            return "mooncake"
        if isinstance(obj, dict) and "prompt_tokens" in obj:
            return "simple"
        raise PhaserError(f"{path}:1: unknown JSONL trace (expected Mooncake 'input_length' or phaser 'prompt_tokens' keys)")
    header = [h.strip() for h in first.strip().split(",")]
    if "ContextTokens" in header:
        return "azure"
    if "Response tokens" in header:
        return "burstgpt"
    if "num_decode_tokens" in header:
        return "lengths"
    if "arrival_s" in header:
        return "simple"
    raise PhaserError(f"{path}:1: unknown trace format (header {first.strip()[:80]!r}); expected Azure, BurstGPT, "
                      "Mooncake, a length-stats file or phaser's arrival_s,prompt_tokens,output_tokens")


def read_file(path: str | Path, *, name: str | None = None) -> Trace:
    kind = sniff(path)
    if kind == "azure":
        from load_generator.readers.azure import read_azure
        return read_azure(path, name=name)
    if kind == "burstgpt":
        from load_generator.readers.burstgpt import read_burstgpt
        return read_burstgpt(path, name=name)
    if kind == "mooncake":
        from load_generator.readers.mooncake import read_mooncake
        return read_mooncake(path, name=name)
    if kind == "simple":
        from load_generator.readers.simple import read_simple
        return read_simple(path, name=name)
    raise PhaserError(f"{path}: a length-stats file has no arrival times; load it through load_workload(), which adds them")
