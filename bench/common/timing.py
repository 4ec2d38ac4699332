"""Timing: one call, repeated calls, and several actions in interleaved, shuffled rounds."""

from __future__ import annotations

import gc
import math
import random
import time
from collections.abc import Callable, Mapping


def time_ns(action: Callable[[], object]) -> int:
    """One call's duration in nanoseconds."""
    started = time.perf_counter_ns()
    action()
    return time.perf_counter_ns() - started


def measure(action: Callable[[], object], *, samples: int, warmup: int = 0) -> list[int]:
    """``warmup`` untimed calls, then ``samples`` timed ones."""
    for _ in range(warmup):
        action()
    gc.collect()
    return [time_ns(action) for _ in range(samples)]


def interleave(
    cases: Mapping[str, Callable[[], object]],
    *,
    samples: int,
    warmup: int = 0,
    block: int = 1,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Time several actions in interleaved rounds: ``block`` calls of each per round, in an order
    shuffled afresh each round (seeded, so a run is repeatable).

    Each case gets ``samples`` samples (rounded up to a whole block). The first call of a block runs
    colder than the rest, and how much colder depends on what ran just before it. A shuffled order gives
    every case every neighbour: no case always runs first, last, or after the same other case. (A
    rotated order, used until 2026-11-29, kept the cyclic order fixed: the personalized tier always ran
    right after the bare Powertools resolver, the raw GET after global popularity; docs/benchmarks.md.)
    """
    if block < 1:
        raise ValueError("block must be at least 1")
    rng = random.Random(seed)
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    gc.collect()
    results: dict[str, list[int]] = {name: [] for name in names}
    rounds = math.ceil(samples / block)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            action = cases[name]
            bucket = results[name]
            for _ in range(block):
                bucket.append(time_ns(action))
    return results
