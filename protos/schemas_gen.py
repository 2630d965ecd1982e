"""Generate the per-topic JSON Schemas from the pydantic definitions.

Two files per topic land in ``protos/schemas/``:

* ``<topic>.json`` — the schema the embedded broker (tansu) enforces. Tansu
  validates a *record*, an object whose ``value`` property holds the message, so
  the message schema is wrapped accordingly.
* ``<topic>.message.json`` — the bare message schema, for other tools.

``python -m protos.schemas_gen`` rewrites them; ``--check`` exits 1 when the
checked-in files differ from what the code generates (the drift test uses it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from protos.messages import TOPICS

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def message_schema(topic: str) -> dict:
    schema = TOPICS[topic].model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"phaser {topic} message"
    return schema


def _inline_refs(node, defs: dict):
    """Replace ``{"$ref": "#/$defs/X"}`` by the definition itself: the broker's
    validator does not follow references (seen with tansu 0.6: a nested invalid
    Request inside an Assignment was accepted until the refs were inlined)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.split("/")[-1]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


def record_schema(topic: str) -> dict:
    msg = message_schema(topic)
    defs = msg.pop("$defs", {})
    msg.pop("$schema", None)
    msg = _inline_refs(msg, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"phaser {topic} record",
        "type": "object",
        "properties": {"value": msg},
        "required": ["value"],
    }


def render() -> dict[str, str]:
    out = {}
    for topic in TOPICS:
        out[f"{topic}.json"] = json.dumps(record_schema(topic), indent=2, sort_keys=True) + "\n"
        out[f"{topic}.message.json"] = json.dumps(message_schema(topic), indent=2, sort_keys=True) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    files = render()
    if "--check" in argv:
        drift = [n for n, text in files.items()
                 if not (SCHEMA_DIR / n).exists() or (SCHEMA_DIR / n).read_text() != text]
        extra = [p.name for p in SCHEMA_DIR.glob("*.json") if p.name not in files]
        if drift or extra:
            print("schemas drifted: " + ", ".join(drift + extra) + " (run: python -m protos.schemas_gen)")
            return 1
        return 0
    SCHEMA_DIR.mkdir(exist_ok=True)
    for n, text in files.items():
        (SCHEMA_DIR / n).write_text(text)
    print(f"wrote {len(files)} schema files to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
