"""``Health``: which instances the router may route to -- one rule for every backend.

An instance is **down** when

* its heartbeats stop: nothing from it for ``down_after_s`` stack seconds
  (counted from the later of its last heartbeat and the router's start), or
* its worker says so: a heartbeat with ``health == "unhealthy"`` (a real-engine
  backend reports this when its engine fails or its circuit opens).

It is **live** again with its next healthy heartbeat.

``down_after_s`` is set by the router shell as
``max(HEARTBEAT_MISSES x heartbeat period, DOWN_FLOOR_WALL_S x time scale)``:
a number of missed heartbeats, with a wall-clock floor so that a loaded machine
(a worker descheduled for a second or two) raises no false alarm. The router
feeds heartbeats with the time it *processes* them, so a router that was itself
starved reads the backlog of heartbeats before it checks silence.

Pure: no I/O, time passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: heartbeat periods of silence before an instance is down
HEARTBEAT_MISSES = 10
#: ... but never less than this many wall seconds
DOWN_FLOOR_WALL_S = 5.0


def down_after(heartbeat_s: float, time_scale: float, misses: int = HEARTBEAT_MISSES,
               floor_wall_s: float = DOWN_FLOOR_WALL_S) -> float:
    """Stack seconds of silence after which an instance is down (see module docstring)."""
    return max(misses * heartbeat_s, floor_wall_s * time_scale)


@dataclass
class Health:
    n: int
    down_after_s: float
    started_s: float = 0.0
    last_seen: list[float] = field(default_factory=list)
    down: dict[int, str] = field(default_factory=dict)  # instance -> why
    went_down: int = 0
    came_back: int = 0

    def __post_init__(self) -> None:
        if not self.last_seen:
            self.last_seen = [-math.inf] * self.n

    def live(self, i: int) -> bool:
        return i not in self.down

    @property
    def any_live(self) -> bool:
        return len(self.down) < self.n

    def on_status(self, instance: int, healthy: bool, reason: str, t: float) -> str | None:
        """A heartbeat; returns ``"down"`` or ``"up"`` when it changes the instance's state."""
        if not 0 <= instance < self.n:
            return None
        self.last_seen[instance] = max(self.last_seen[instance], t)
        if not healthy:
            if instance not in self.down:
                self.down[instance] = f"worker reports it unhealthy: {reason}" if reason else "worker reports it unhealthy"
                self.went_down += 1
                return "down"
            return None
        if instance in self.down:
            del self.down[instance]
            self.came_back += 1
            return "up"
        return None

    def check(self, now: float) -> list[int]:
        """Instances that fell silent since the last check (now down)."""
        out = []
        for i in range(self.n):
            if i in self.down:
                continue
            since = max(self.last_seen[i], self.started_s)
            if now - since > self.down_after_s:
                self.down[i] = f"no heartbeat for {now - since:.1f} stack s (limit {self.down_after_s:.1f})"
                self.went_down += 1
                out.append(i)
        return out
