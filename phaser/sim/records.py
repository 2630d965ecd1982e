"""Per-request export: JSONL or CSV chosen by the file extension.

Columns are the ``protos.Completion`` field names (``request_id``, ``instance``,
``arrival_s``, ``first_token_s``, ``finish_s``, ``ttft_s``, ``tbt_mean_s``,
``tbt_p99_s``, ``e2e_s``, ``router_wait_s``, ``preemptions``,
``prompt_tokens``, ``output_tokens``, …) so a simulated run and a live run
export the same table. ``policy``/``policy_version`` come from ``extra``.
"""

from __future__ import annotations

import csv
from dataclasses import fields
from pathlib import Path

import orjson

from phaser.engine.instance import RequestRecord
from phaser.errors import PhaserError
from protos.messages import Completion

#: Completion fields, wire order, without the schema version.
FIELDS: list[str] = [f for f in Completion.model_fields if f != "v"]
_REC_FIELDS = [f.name for f in fields(RequestRecord)]


def record_row(rec: RequestRecord, **extra) -> dict:
    d = {("request_id" if k == "id" else k): getattr(rec, k) for k in _REC_FIELDS}
    d.setdefault("policy", "")
    d.setdefault("policy_version", 0)
    d.setdefault("status", "ok")  # a record is a served request
    d.setdefault("reason", "")
    d.setdefault("epoch", 0)
    d.update(extra)
    return {k: d[k] for k in FIELDS}


def write_records(records, path, **extra) -> Path:
    """Write ``records`` to ``path`` (``.jsonl``/``.ndjson`` or ``.csv``)."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in (".jsonl", ".ndjson", ".csv"):
        raise PhaserError(f"records file must end in .jsonl or .csv, got {p.name!r}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if ext == ".csv":
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=FIELDS)
                w.writeheader()
                for r in records:
                    w.writerow(record_row(r, **extra))
        else:
            with p.open("wb") as f:
                for r in records:
                    f.write(orjson.dumps(record_row(r, **extra)))
                    f.write(b"\n")
    except OSError as e:
        raise PhaserError(f"cannot write records to {p}: {e.strerror}") from None
    return p
