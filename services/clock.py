"""The stack clock: the one notion of time every live service agrees on.

``now_s = time.time() * time_scale`` (see the ``protos.messages`` docstring):
seconds of *simulated GPU time*, so latencies measured by the live stack are in
the same unit as the simulator's. With ``time_scale = 10`` one wall second is ten
stack seconds, i.e. simulated GPUs run ten times faster than real ones.

Decision: the clock is anchored on the Unix epoch (not on a per-process start)
so that independent processes — load generator, router, workers, monitor —
agree without any handshake, as long as they share a host clock and a scale.
At scale 100 the float resolution of ``1.7e11`` is ~3e-5 stack seconds, far
below one engine iteration (~10 ms), so the large absolute values are harmless.

The wall-clock function is injectable so the functional core can be tested
without sleeping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from phaser.errors import PhaserError


@dataclass(frozen=True)
class StackClock:
    time_scale: float = 1.0
    wall: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.time_scale > 0 and self.time_scale < 1e6):
            raise PhaserError(f"--time-scale must be in (0, 1e6), got {self.time_scale}")

    def now(self) -> float:
        """Current stack-clock time in stack seconds."""
        return self.wall() * self.time_scale

    def to_wall(self, stack_seconds: float) -> float:
        """A stack-clock duration as wall seconds (what ``asyncio.sleep`` takes)."""
        return stack_seconds / self.time_scale

    def wall_until(self, stack_t: float) -> float:
        """Wall seconds from now until stack time ``stack_t`` (never negative)."""
        return max(0.0, (stack_t - self.now()) / self.time_scale)


#: Default ``--time-scale`` of the stack: 10× faster than real GPUs. With the
#: default load (paper mix, 20 req/s) 1,000 requests arrive over 50 stack
#: seconds = 5 wall seconds and the longest decodes (~4k tokens × ~35 ms) end
#: ~15 wall seconds later, so ``phaser up`` finishes well inside a minute; a
#: Kafka hop of a few wall ms stays a few tens of stack ms (about one decode
#: iteration), which bounds the live-vs-simulator jitter.
DEFAULT_TIME_SCALE = 10.0
