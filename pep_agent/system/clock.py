"""Time as the flow sees it: monotonic time, wall time, sleep and jitter. Side effect: sleeping.

Injected into the flow so that tests of the retry schedule run on a fake clock.
"""

from __future__ import annotations

import random
import time


class Clock:
    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def uniform(self, low: float, high: float) -> float:
        return self._rng.uniform(low, high)
