"""``Health``: which instances the router may route to -- one rule for every backend.

An instance is **down** when

* its heartbeats stop: nothing from it for ``down_after_s`` stack seconds
  (counted from the later of its last heartbeat and the router's start) **while
  the stream moves on**: since it was last heard, some other instance's
  heartbeats have arrived whose own send times (``ts_s``) advanced by more than
  ``down_after_s`` -- or
* its worker says so: a heartbeat with ``health == "unhealthy"`` (a real-engine
  backend reports this when its engine fails or its circuit opens).

It is **live** again with its next healthy heartbeat.

``down_after_s`` is set by the router shell as
``max(HEARTBEAT_MISSES x heartbeat period, DOWN_FLOOR_WALL_S x time scale)``:
a number of missed heartbeats, with a wall-clock floor so that a loaded machine
(a worker descheduled for a second or two) raises no false alarm. The router
feeds heartbeats with the time it *processes* them, so a router that was itself
starved reads the backlog of heartbeats before it checks silence.

Why "while the stream moves on": a broker that falls behind (the embedded tansu
at 100 % CPU under 128 instances and 4 routers) delivers *every* instance's
heartbeats late. Silence on the router's clock alone then declares live
instances down, their requests are re-routed, both copies run, and the extra
load makes the broker later still (measured before this rule: 1,000-2,000 false
downs and 38,825 duplicate completions in one run). A dead worker's instances
fall silent while the others' heartbeats keep arriving; a late broker silences
everyone together. The stream's movement is measured within each sender's own
clock (how far instance j's ``ts_s`` advanced since i's last heartbeat was
processed), never by comparing two workers' clocks, so clock offsets between
hosts cannot raise an alarm. The costs: when *every* instance falls silent at
once the router cannot tell a stalled broker from a dead cluster and declares
none down (there is nowhere to re-route to then anyway, and a restarted worker
serves what its partitions hold); a lag that hits one partition of
``instance-status`` and not the others still looks like death.

Pure: no I/O, time passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

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
    #: router clock when each instance's newest heartbeat was processed
    last_seen: list[float] = field(default_factory=list)
    down: dict[int, str] = field(default_factory=dict)  # instance -> why
    went_down: int = 0
    came_back: int = 0

    def __post_init__(self) -> None:
        if not self.last_seen:
            self.last_seen = [-math.inf] * self.n
        #: newest ``ts_s`` from each instance, and the first (NaN: never heard), in the sender's clock
        self._sent = np.full(self.n, np.nan)
        self._first = np.full(self.n, np.nan)
        #: row i: ``_sent`` as it stood when i's last heartbeat was processed (NaN: never / not yet heard)
        self._mark = np.full((self.n, self.n), np.nan)

    def live(self, i: int) -> bool:
        return i not in self.down

    @property
    def any_live(self) -> bool:
        return len(self.down) < self.n

    def on_status(self, instance: int, healthy: bool, reason: str, t: float, sent_s: float | None = None) -> str | None:
        """A heartbeat processed at router time ``t``, sent at ``sent_s`` on its worker's clock (its ``ts_s``;
        None = ``t``); returns ``"down"`` or ``"up"`` when it changes the instance's state."""
        if not 0 <= instance < self.n:
            return None
        self.last_seen[instance] = max(self.last_seen[instance], t)
        sent = t if sent_s is None or not math.isfinite(sent_s) else sent_s
        if not sent <= self._sent[instance]:  # newer, or the first (NaN compares false)
            self._sent[instance] = sent
        if math.isnan(self._first[instance]):
            self._first[instance] = sent
        self._mark[instance] = self._sent
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

    def moved_since(self, i: int) -> float:
        """How far the stream moved since ``i`` was last heard (router start if never): the largest advance
        of another instance's own send clock since then; 0 when no other instance has been heard."""
        base = np.where(np.isnan(self._mark[i]), self._first, self._mark[i])
        adv = self._sent - base
        adv[i] = np.nan
        adv = adv[~np.isnan(adv)]
        return float(adv.max()) if adv.size else 0.0

    def check(self, now: float) -> list[int]:
        """Instances that fell silent since the last check (now down)."""
        out = []
        for i in range(self.n):
            if i in self.down:
                continue
            since = max(self.last_seen[i], self.started_s)
            if now - since <= self.down_after_s:
                continue
            moved = self.moved_since(i)
            if moved > self.down_after_s:
                self.down[i] = (f"no heartbeat for {now - since:.1f} stack s (limit {self.down_after_s:.1f}) while "
                                f"other instances' heartbeats moved {moved:.1f} s on")
                self.went_down += 1
                out.append(i)
        return out
