"""The benchmark helpers' arithmetic: percentiles, summaries, ratios, interleaving. No timings asserted."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bench.common import interleave, per_second, percentile, ratio, summarize_ns


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose

    assert percentile(values, 0) == 1.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 100) == 4.0
    assert percentile(values, 25) == pytest.approx(1.75)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 0) == percentile([7.0], 99) == percentile([7.0], 100) == 7.0


def test_p99_of_one_to_a_hundred() -> None:
    assert percentile([float(v) for v in range(1, 101)], 99) == pytest.approx(99.01)


def test_percentile_agrees_with_numpy_linear() -> None:
    rng = random.Random(7)
    for size in (2, 3, 10, 101, 1_000):
        values = [rng.expovariate(1.0) for _ in range(size)]
        for q in (0, 1, 50, 90, 99, 99.9, 100):
            assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_rejects_nothing_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    for q in (-1, 100.5, float("nan")):
        with pytest.raises(ValueError, match=r"within 0\.\.100"):
            percentile([1.0], q)


def test_summary_is_in_milliseconds() -> None:
    summary = summarize_ns([1_000_000, 3_000_000, 2_000_000])

    assert summary.n == 3
    assert summary.p50_ms == 2.0
    assert summary.mean_ms == 2.0
    assert summary.min_ms == 1.0
    assert summary.max_ms == 3.0
    assert summary.p99_ms == pytest.approx(2.98)
    assert summary.as_dict()["p99_ms"] == 2.98


def test_summary_needs_samples() -> None:
    with pytest.raises(ValueError, match="no samples"):
        summarize_ns([])


def test_ratio_and_rate() -> None:
    assert ratio(3.0, 4.0) == 0.75
    assert ratio(1.0, 3.0, digits=2) == 0.33
    assert ratio(1.0, 0.0) is None
    assert ratio(None, 1.0) is None
    assert per_second(500, 250_000_000) == 2_000.0
    with pytest.raises(ValueError, match="positive duration"):
        per_second(1, 0)


def test_interleave_gives_every_case_its_samples_and_every_neighbour_in_a_repeatable_order() -> None:
    def run(seed: int) -> list[str]:
        calls: list[str] = []
        cases = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
        samples = interleave(cases, samples=60, warmup=1, block=2, seed=seed)
        assert {name: len(values) for name, values in samples.items()} == {"a": 60, "b": 60, "c": 60}
        assert all(value >= 0 for values in samples.values() for value in values)
        return calls[3:]  # after one warm-up call of each

    timed = run(seed=0)
    rounds = [timed[i : i + 6] for i in range(0, len(timed), 6)]
    for calls in rounds:  # each round: every case once, as one block of two calls
        assert sorted(calls[::2]) == ["a", "b", "c"]
        assert calls[::2] == calls[1::2]
    blocks = [calls[::2] for calls in rounds]
    assert {order[0] for order in blocks} == {"a", "b", "c"}, "no case always runs first"
    followers = {(order[i], order[i + 1]) for order in blocks for i in range(2)}
    assert followers == {(x, y) for x in "abc" for y in "abc" if x != y}, "every case follows every other"
    assert run(seed=0) == timed, "the same seed gives the same order"
    assert run(seed=1) != timed
