"""Samples summarised: percentiles, p50/p99/mean in milliseconds, ratios and rates."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

NS_PER_MS = 1_000_000


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between closest ranks.

    This is numpy's default method ("linear", Hyndman & Fan type 7): the median of an even count is the
    mean of the middle two, p0 is the minimum and p100 the maximum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


@dataclass(frozen=True)
class Summary:
    """Latency samples summarised, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self, digits: int = 4) -> dict[str, float | int]:
        return {
            "p50_ms": round(self.p50_ms, digits),
            "p99_ms": round(self.p99_ms, digits),
            "mean_ms": round(self.mean_ms, digits),
            "min_ms": round(self.min_ms, digits),
            "max_ms": round(self.max_ms, digits),
            "n": self.n,
        }


def summarize_ns(samples_ns: Sequence[int]) -> Summary:
    """p50/p99/mean/min/max of ``perf_counter_ns`` durations, in milliseconds."""
    if not samples_ns:
        raise ValueError("no samples to summarise")
    ms = [sample / NS_PER_MS for sample in samples_ns]
    return Summary(
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=math.fsum(ms) / len(ms),
        min_ms=min(ms),
        max_ms=max(ms),
    )


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded; None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, digits)


def per_second(count: float, total_ns: int) -> float:
    """A rate from a count and the nanoseconds it took."""
    if total_ns <= 0:
        raise ValueError("a rate needs a positive duration")
    return count * 1e9 / total_ns
