"""Medians, percentiles and spreads of repeated measurements. No side effects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = math.ceil(pos)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Summary:
    """A sample reduced to its median and spread (interquartile range, min, max)."""

    n: int
    median: float
    p25: float
    p75: float
    p95: float
    min: float
    max: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}

    def text(self, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
        """"median 57.1 ms (IQR 55.9-58.3, range 54.2-61.0, n=15)" in the given unit."""
        if self.n == 0:
            return "no data"

        def f(v: float) -> str:
            return f"{v * scale:.{digits}f}"

        return (f"median {f(self.median)}{unit} (IQR {f(self.p25)}-{f(self.p75)}, "
                f"range {f(self.min)}-{f(self.max)}, n={self.n})")


def summarize(values: Sequence[float]) -> Summary:
    vals = [float(v) for v in values]
    if not vals:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan)
    return Summary(len(vals), percentile(vals, 50), percentile(vals, 25), percentile(vals, 75),
                   percentile(vals, 95), min(vals), max(vals))


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan
