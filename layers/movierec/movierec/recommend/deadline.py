"""A request's time budget. Tiers check it before starting work they could not finish in time."""

from __future__ import annotations

import time
from collections.abc import Callable


class Deadline:
    def __init__(self, budget_ms: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._ends_at = clock() + budget_ms / 1000

    def remaining_ms(self) -> float:
        return max(0.0, (self._ends_at - self._clock()) * 1000)

    def allows(self, needed_ms: float) -> bool:
        return self.remaining_ms() >= needed_ms
