"""The calibration time budget as an explicit input: a deadline on a clock the caller gives.

The live service gives the engine its clock (``time.perf_counter``), so a slow batch
defers the rest of its slices and a slow surface fit stops at its best point so far.
A replay gives none: no deadline, so the same file always fits the same slices, however
loaded the machine. Tests give a fake clock and drive the budget without wall time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

#: Seconds on a monotonic clock (``time.perf_counter`` live; a fake one in tests).
Clock = Callable[[], float]


@dataclass(frozen=True)
class Deadline:
    """An instant on ``clock`` past which calibration starts no more work."""

    at_s: float
    clock: Clock

    @classmethod
    def after(cls, budget_ms: float, clock: Clock | None) -> Deadline | None:
        """``budget_ms`` from now on ``clock``; None (no deadline) without a clock."""
        return None if clock is None else cls(clock() + budget_ms / 1000.0, clock)

    def passed(self) -> bool:
        """Whether the clock is past the deadline."""
        return self.clock() > self.at_s
