"""Shared plumbing for readers: opening files and turning bad cells into one-line errors.

Every error names the file and the 1-based line number, so ``phaser workload
stats broken.csv`` says exactly where to look.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from phaser.errors import PhaserError

MAX_TOKENS = 1_000_000  # protos.Request's bound on prompt/output tokens


def open_text(path: str | Path) -> IO[str]:
    p = Path(path)
    if not p.is_file():
        raise PhaserError(f"workload file {str(p)!r} does not exist (or is not a file)")
    try:
        return p.open("r", encoding="utf-8", newline="")
    except OSError as e:
        raise PhaserError(f"cannot read workload file {str(p)!r}: {e.strerror}") from None


def csv_rows(path: str | Path, required: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (line number, row) for a CSV with a header that has ``required`` columns."""
    with open_text(path) as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in required if c not in header]
        if missing:
            raise PhaserError(f"{path}:1: missing column(s) {', '.join(missing)} (header is {','.join(header) or 'empty'})")
        reader.fieldnames = header
        try:
            for row in reader:
                if not any((v or "").strip() for k, v in row.items() if k is not None):
                    continue  # blank line
                if None in row or any(row.get(c) is None for c in required):
                    raise PhaserError(f"{path}:{reader.line_num}: expected {len(header)} columns")
                yield reader.line_num, row
        except csv.Error as e:
            raise PhaserError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
        except UnicodeDecodeError:
            raise PhaserError(f"{path}: not UTF-8 text") from None


def parse_int(value, path, line: int, column: str, *, minimum: int = 1) -> int:
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            value = value.strip()
            x = int(value) if value.lstrip("-").isdigit() else float(value)
        else:
            x = value
        if isinstance(x, float):
            if not math.isfinite(x) or x != int(x):
                raise ValueError
            x = int(x)
        if not isinstance(x, int):
            raise ValueError
    except (TypeError, ValueError):
        raise PhaserError(f"{path}:{line}: {column} must be a whole number, got {value!r}") from None
    if x < minimum or x > MAX_TOKENS:
        raise PhaserError(f"{path}:{line}: {column} must be between {minimum} and {MAX_TOKENS}, got {x}")
    return x


def parse_float(value, path, line: int, column: str) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        x = float(value.strip() if isinstance(value, str) else value)
        if not math.isfinite(x):
            raise ValueError
    except (TypeError, ValueError):
        raise PhaserError(f"{path}:{line}: {column} must be a number, got {value!r}") from None
    if x < 0:
        raise PhaserError(f"{path}:{line}: {column} must be >= 0, got {x}")
    return x


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object) for each non-blank line of a JSON-lines file."""
    import orjson

    with open_text(path) as f:
        try:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise PhaserError(f"{path}:{line_no}: not valid JSON") from None
                if not isinstance(obj, dict):
                    raise PhaserError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
                yield line_no, obj
        except UnicodeDecodeError:
            raise PhaserError(f"{path}: not UTF-8 text") from None


def require(obj: dict, keys: list[str], path, line: int) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise PhaserError(f"{path}:{line}: missing field(s) {', '.join(missing)}")


def parse_id_list(value, path, line: int, column: str) -> list[int] | None:
    """Prefix ids: a JSON list of ints, or in CSV a string like ``"1 2 3"`` / ``"[1,2,3]"``."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        parts = [p for p in value.strip().strip("[]").replace(",", " ").replace(";", " ").split() if p]
    elif isinstance(value, list):
        parts = value
    else:
        raise PhaserError(f"{path}:{line}: {column} must be a list of whole numbers, got {value!r}")
    out = []
    for p in parts:
        if isinstance(p, bool) or not (isinstance(p, int) or (isinstance(p, str) and p.lstrip("-").isdigit())):
            raise PhaserError(f"{path}:{line}: {column} must be a list of whole numbers, got {value!r}")
        out.append(int(p))
    return out or None
