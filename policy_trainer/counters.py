"""Event counters reported by the trainer (joiner, transition builder)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Counters:
    """Base of the trainer's counter dataclasses: integer fields, reported as floats."""

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}
