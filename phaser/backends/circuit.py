"""A per-endpoint circuit breaker (closed → open → half-open → closed).

Closed: requests flow; ``failure_threshold`` failures in a row open it. Open:
nothing is sent for ``open_s`` seconds, then one probe is allowed
(half-open). A probe that succeeds closes it; one that fails opens it again.
Time is passed in, so tests drive it without sleeping. The worker reports
its instance ``unhealthy`` while the circuit is not closed, which makes the
router fail it over (``phaser.cluster.health``).
"""

from __future__ import annotations

from dataclasses import dataclass

from phaser.errors import PhaserError


@dataclass
class CircuitBreaker:
    failure_threshold: int = 3
    open_s: float = 5.0
    state: str = "closed"
    failures: int = 0
    opened_at: float = 0.0
    last_error: str = ""
    opens: int = 0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or not self.open_s > 0:
            raise PhaserError("circuit breaker needs failure_threshold >= 1 and open_s > 0")

    def allow(self, now: float) -> bool:
        """May a request (or probe) be sent now?"""
        if self.state == "closed":
            return True
        if self.state == "open" and now - self.opened_at >= self.open_s:
            self.state = "half-open"  # this caller's request is the one probe
            return True
        return False  # open, or half-open with its probe outstanding

    def success(self) -> None:
        self.state, self.failures, self.last_error = "closed", 0, ""

    def failure(self, now: float, why: str) -> None:
        self.failures += 1
        self.last_error = why
        if self.state == "half-open" or self.failures >= self.failure_threshold:
            if self.state == "closed":  # a failed probe re-opens; it is not a new outage
                self.opens += 1
            self.state, self.opened_at = "open", now

    @property
    def healthy(self) -> bool:
        return self.state == "closed"
