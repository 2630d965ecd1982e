"""Join the router's decisions with their outcomes, by request id.

The trainer reads three topics that Kafka does not order against each other:
``assignments`` (one partition per instance, so even decisions arrive out of
order), ``completions`` and ``instance-status``. A request's completion can be
read *before* its assignment, either message can be delivered twice (at-least-
once delivery, a restarted consumer), and either can arrive after its partner
was given up on. The joiner emits each request's ``(assignment, completion)``
pair exactly once, whatever the arrival order, with bounded memory.

Decisions (the issue says "bounded memory", nothing more):

* **Time is the caller's.** Every method takes ``now_s`` (stack-clock seconds);
  the joiner never reads a clock, so tests drive it deterministically.
* **Pending halves expire** after ``ttl_s`` stack seconds (default 600 s: the
  paper's heaviest requests decode ~4,000 tokens at ~35 ms per iteration,
  ~140 s, plus queueing; 600 s leaves a 4x margin). An expired half is counted
  in ``expired`` and its id is remembered, so the partner, if it ever shows up,
  is counted as ``late`` instead of starting a new pending entry.
* **Hard caps**: at most ``max_pending`` unmatched halves (oldest evicted first,
  counted in ``evicted``) and at most ``max_remembered`` ids of joined/expired
  requests (oldest forgotten first). Defaults (50,000 / 200,000) hold a
  1,000 req/s stream for 50 s of unmatched backlog and 200 s of duplicate
  detection in a few tens of MB.
* **Duplicates** (same id, same kind, while pending or after joining) are
  counted in ``duplicates`` and ignored: the first copy wins, which is the one
  the router acted on (the router de-duplicates request ids, so a second
  assignment is a redelivery, not a second decision).
* ``instance-status`` is not per request: the joiner keeps the newest heartbeat
  per instance (by ``ts_s``; older ones count as ``stale_status``) and hands the
  snapshot to whoever asks.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from protos.messages import Assignment, Completion, InstanceStatus
from policy_trainer.counters import Counters


@dataclass(frozen=True, slots=True)
class Joined:
    """One request's decision and outcome."""

    assignment: Assignment
    completion: Completion

    @property
    def request_id(self) -> str:
        return self.completion.request_id


@dataclass
class JoinCounters(Counters):
    assignments: int = 0
    completions: int = 0
    statuses: int = 0
    joined: int = 0
    duplicates: int = 0
    late: int = 0
    expired: int = 0
    evicted: int = 0
    stale_status: int = 0
    not_served: int = 0


@dataclass
class _Half:
    kind: str  # "a" or "c"
    msg: Assignment | Completion
    seen_s: float


@dataclass
class Joiner:
    ttl_s: float = 600.0
    max_pending: int = 50_000
    max_remembered: int = 200_000
    counters: JoinCounters = field(default_factory=JoinCounters)

    def __post_init__(self) -> None:
        if self.ttl_s <= 0 or self.max_pending < 1 or self.max_remembered < 1:
            raise ValueError("Joiner needs ttl_s > 0, max_pending >= 1, max_remembered >= 1")
        # insertion order == arrival order, so the oldest entry is first
        self._pending: OrderedDict[str, _Half] = OrderedDict()
        # id -> "joined" | "expired"; bounded, oldest forgotten first
        self._done: OrderedDict[str, str] = OrderedDict()
        self.status: dict[int, InstanceStatus] = {}

    # ------------------------------------------------------------------ input
    def add_assignment(self, a: Assignment, now_s: float) -> Joined | None:
        self.counters.assignments += 1
        return self._add(a.request.id, "a", a, now_s)

    def add_completion(self, c: Completion, now_s: float) -> Joined | None:
        self.counters.completions += 1
        return self._add(c.request_id, "c", c, now_s)

    def drop(self, rid: str) -> None:
        """A request that ended without being served (status ``rejected`` or
        ``error``): no transition, and its pending half is forgotten now."""
        self.counters.not_served += 1
        self._pending.pop(rid, None)
        self._remember(rid, "not-served")

    def add_status(self, s: InstanceStatus) -> None:
        self.counters.statuses += 1
        old = self.status.get(s.instance)
        if old is not None and s.ts_s < old.ts_s:
            self.counters.stale_status += 1
            return
        self.status[s.instance] = s

    def expire(self, now_s: float) -> int:
        """Drop pending halves older than ``ttl_s``; returns how many."""
        n = 0
        cutoff = now_s - self.ttl_s
        while self._pending:
            rid, half = next(iter(self._pending.items()))
            if half.seen_s > cutoff:
                break
            del self._pending[rid]
            self._remember(rid, "expired")
            self.counters.expired += 1
            n += 1
        return n

    # ------------------------------------------------------------- internals
    def _add(self, rid: str, kind: str, msg, now_s: float) -> Joined | None:
        fate = self._done.get(rid)
        if fate is not None:
            if fate == "joined":
                self.counters.duplicates += 1
            else:
                self.counters.late += 1
            return None
        half = self._pending.get(rid)
        if half is None:
            self._pending[rid] = _Half(kind, msg, now_s)
            while len(self._pending) > self.max_pending:
                old_id, _ = self._pending.popitem(last=False)
                self._remember(old_id, "expired")
                self.counters.evicted += 1
            return None
        if half.kind == kind:
            self.counters.duplicates += 1
            return None
        del self._pending[rid]
        self._remember(rid, "joined")
        self.counters.joined += 1
        a, c = (half.msg, msg) if kind == "c" else (msg, half.msg)
        return Joined(assignment=a, completion=c)

    def _remember(self, rid: str, fate: str) -> None:
        self._done[rid] = fate
        while len(self._done) > self.max_remembered:
            self._done.popitem(last=False)

    # ----------------------------------------------------------------- state
    def is_pending(self, rid: str) -> bool:
        return rid in self._pending

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def remembered(self) -> int:
        return len(self._done)
