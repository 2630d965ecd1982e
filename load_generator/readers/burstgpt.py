"""BurstGPT trace (``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``).

Source: BurstGPT (Wang et al., "BurstGPT: A Real-world Workload Dataset to
Optimize LLM Serving Systems", CC-BY-4.0); not vendored — pass the file path.

Decisions:
* ``Timestamp`` is seconds from the start of the trace; arrivals are shifted
  so the first kept request arrives at 0.
* Failed requests are logged with 0 response tokens: they are skipped and
  counted (``Trace.skipped``), as are rows with 0 request tokens.
* The task tag is the ``Model`` column (``ChatGPT``, ``GPT-4``), the closest
  thing to an application the trace has; ``Log Type`` is not kept.
"""

from __future__ import annotations

from pathlib import Path

from load_generator.readers.common import csv_rows, parse_float, parse_int
from load_generator.trace import Trace, make_request, sort_and_number
from phaser.errors import PhaserError

COLUMNS = ["Timestamp", "Model", "Request tokens", "Response tokens"]


def read_burstgpt(path: str | Path, *, name: str | None = None) -> Trace:
    rows = []
    failed = empty_prompt = 0
    for line, row in csv_rows(path, COLUMNS):
        ts = parse_float(row["Timestamp"], path, line, "Timestamp")
        req = parse_int(row["Request tokens"], path, line, "Request tokens", minimum=0)
        resp = parse_int(row["Response tokens"], path, line, "Response tokens", minimum=0)
        if resp == 0:
            failed += 1
            continue
        if req == 0:
            empty_prompt += 1
            continue
        rows.append((ts, req, resp, (row["Model"] or "").strip() or None))
    if not rows:
        raise PhaserError(f"{path}: no successful requests in the trace ({failed} failed rows)")
    t0 = min(r[0] for r in rows)
    reqs = [make_request("", ts - t0, req, resp, task=model) for ts, req, resp, model in rows]
    skipped = {}
    if failed:
        skipped["failed (0 response tokens)"] = failed
    if empty_prompt:
        skipped["0 request tokens"] = empty_prompt
    name = name or Path(path).stem
    return Trace(sort_and_number(reqs, name), name=name, skipped=skipped)
