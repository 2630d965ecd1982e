"""Azure LLM inference trace 2023 (``TIMESTAMP,ContextTokens,GeneratedTokens``).

Source and licence: Azure Public Dataset (CC-BY-4.0), Patel et al., "Splitwise",
ISCA 2024; two files are vendored in ``load_generator/data`` (see SOURCES.md).

Decisions:
* Timestamps have 7 fractional digits (100 ns); ``datetime`` takes 6, so the
  7th is cut (a 100 ns error, far below anything a router sees).
* Arrivals are made relative to the first request (``arrival_s`` of the first
  row is 0), rows are sorted by time.
* The trace has no task column; the service is the task tag: ``conversation``
  or ``coding`` when the file name says so (``task=`` overrides).
* Rows with 0 context or 0 generated tokens cannot be served by the contract
  (``protos.Request`` needs >= 1 of each): they are skipped and counted, like
  BurstGPT's failed rows. The vendored files contain none.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from load_generator.readers.common import csv_rows, parse_int
from load_generator.trace import Trace, make_request, sort_and_number
from phaser.errors import PhaserError

COLUMNS = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]


def _parse_ts(value: str, path, line: int) -> float:
    s = (value or "").strip()
    head, dot, frac = s.partition(".")
    if dot:
        s = f"{head}.{frac[:6].ljust(6, '0')}"
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        raise PhaserError(f"{path}:{line}: TIMESTAMP must look like 2023-11-16 18:17:03.9799600, got {value!r}") from None


def task_from_name(path: str | Path) -> str | None:
    name = Path(path).name.lower()
    if "code" in name:
        return "coding"
    if "conv" in name:
        return "conversation"
    return None


def read_azure(path: str | Path, *, task: str | None = None, name: str | None = None) -> Trace:
    task = task if task is not None else task_from_name(path)
    rows: list[tuple[float, int, int]] = []
    skipped = 0
    for line, row in csv_rows(path, COLUMNS):
        ts = _parse_ts(row["TIMESTAMP"], path, line)
        ctx = parse_int(row["ContextTokens"], path, line, "ContextTokens", minimum=0)
        gen = parse_int(row["GeneratedTokens"], path, line, "GeneratedTokens", minimum=0)
        if ctx == 0 or gen == 0:
            skipped += 1
            continue
        rows.append((ts, ctx, gen))
    if not rows:
        raise PhaserError(f"{path}: no requests in the trace")
    t0 = min(r[0] for r in rows)
    reqs = [make_request("", ts - t0, ctx, gen, task=task) for ts, ctx, gen in rows]
    name = name or Path(path).stem
    return Trace(sort_and_number(reqs, name), name=name,
                 skipped={"0 context or generated tokens": skipped} if skipped else {})
