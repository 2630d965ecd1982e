"""Mooncake trace (JSONL: ``timestamp`` in ms, ``input_length``, ``output_length``, ``hash_ids``).

Source: Mooncake (Qin et al., "Mooncake: A KVCache-centric Disaggregated
Architecture for LLM Serving", FAST 2025; traces Apache-2.0); not vendored —
pass the file path.

Decisions:
* ``timestamp`` is milliseconds; arrivals are seconds from the first request.
* ``hash_ids`` become ``prefix_ids`` unchanged: one id per **512-token** block
  as Mooncake defines them; equal leading ids mean a shared prefix. (The
  block size is Mooncake's, stated here so a prefix cache can rescale.)
* A row without ``hash_ids`` gets no prefix ids; missing lengths or a bad
  timestamp are errors naming file and line.
"""

from __future__ import annotations

from pathlib import Path

from load_generator.readers.common import jsonl_rows, parse_float, parse_id_list, parse_int, require
from load_generator.trace import Trace, make_request, sort_and_number
from phaser.errors import PhaserError

#: tokens per Mooncake hash block (Mooncake trace README).
MOONCAKE_BLOCK_TOKENS = 512


def read_mooncake(path: str | Path, *, name: str | None = None, task: str | None = None) -> Trace:
    rows = []
    for line, obj in jsonl_rows(path):
        require(obj, ["timestamp", "input_length", "output_length"], path, line)
        ts = parse_float(obj["timestamp"], path, line, "timestamp") / 1000.0
        inp = parse_int(obj["input_length"], path, line, "input_length")
        out = parse_int(obj["output_length"], path, line, "output_length")
        ids = parse_id_list(obj.get("hash_ids"), path, line, "hash_ids")
        rows.append((ts, inp, out, ids))
    if not rows:
        raise PhaserError(f"{path}: no requests in the trace")
    t0 = min(r[0] for r in rows)
    reqs = [make_request("", ts - t0, inp, out, task=task, prefix_ids=ids) for ts, inp, out, ids in rows]
    name = name or Path(path).stem
    return Trace(sort_and_number(reqs, name), name=name)
