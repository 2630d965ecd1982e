"""phaser's own simple trace format, CSV or JSONL, for reading and writing.

Columns / keys: ``arrival_s, prompt_tokens, output_tokens`` and optionally
``task`` and ``prefix_ids`` (CSV: ids separated by spaces, e.g. ``"7 7 9"``;
JSONL: a list). ``arrival_s`` is kept as written (not shifted to 0) so an
exported workload reads back identically; rows are sorted by arrival.
Ids are regenerated as ``{name}-{i}`` in arrival order.
"""

from __future__ import annotations

import csv
from pathlib import Path

import orjson

from load_generator.readers.common import csv_rows, jsonl_rows, parse_float, parse_id_list, parse_int, require
from load_generator.trace import Trace, make_request, sort_and_number
from phaser.errors import PhaserError
from protos import Request

REQUIRED = ["arrival_s", "prompt_tokens", "output_tokens"]
COLUMNS = REQUIRED + ["task", "prefix_ids"]


def _row(obj: dict, path, line: int) -> Request:
    task = obj.get("task")
    if task is not None and not isinstance(task, str):
        raise PhaserError(f"{path}:{line}: task must be text, got {task!r}")
    return make_request(
        "",
        parse_float(obj["arrival_s"], path, line, "arrival_s"),
        parse_int(obj["prompt_tokens"], path, line, "prompt_tokens"),
        parse_int(obj["output_tokens"], path, line, "output_tokens"),
        task=(task.strip() or None) if isinstance(task, str) else None,
        prefix_ids=parse_id_list(obj.get("prefix_ids"), path, line, "prefix_ids"),
    )


def read_simple(path: str | Path, *, name: str | None = None) -> Trace:
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        reqs = []
        for line, obj in jsonl_rows(path):
            require(obj, REQUIRED, path, line)
            reqs.append(_row(obj, path, line))
    else:
        reqs = [_row(row, path, line) for line, row in csv_rows(path, REQUIRED)]
    if not reqs:
        raise PhaserError(f"{path}: no requests in the trace")
    name = name or path.stem
    return Trace(sort_and_number(reqs, name), name=name)


def write_simple(requests: list[Request], path: str | Path) -> None:
    """Write ``requests`` as simple CSV (``.csv``) or JSONL (anything else)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(COLUMNS)
                for r in requests:
                    w.writerow([repr(r.arrival_s), r.prompt_tokens, r.output_tokens, r.task or "",
                                " ".join(map(str, r.prefix_ids or []))])
        else:
            with path.open("wb") as f:
                for r in requests:
                    obj = {"arrival_s": r.arrival_s, "prompt_tokens": r.prompt_tokens, "output_tokens": r.output_tokens}
                    if r.task is not None:
                        obj["task"] = r.task
                    if r.prefix_ids:
                        obj["prefix_ids"] = r.prefix_ids
                    f.write(orjson.dumps(obj) + b"\n")
    except OSError as e:
        raise PhaserError(f"cannot write {str(path)!r}: {e.strerror}") from None
