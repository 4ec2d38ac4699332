"""Ranking metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training_job.data import positives_from_columns
from training_job.evaluate import (
    EvalCases,
    PopularityScorer,
    evaluate,
    full_ranks,
    metrics_from_ranks,
    sampled_ranks,
    seen_matrix,
)


class TableScorer:
    """Scores from a fixed (users, movies) table."""

    def __init__(self, table: np.ndarray) -> None:
        self.table = table.astype(np.float32)
        self.n_movies = table.shape[1]

    def score_pairs(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.table[users[:, None], movies]
        return out

    def score_all(self, users: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.table[users]
        return out


def test_hr_and_ndcg_from_ranks() -> None:
    ranks = np.array([0, 1, 9, 10, 50])
    metrics = metrics_from_ranks(ranks, 10)
    assert metrics["hr@10"] == pytest.approx(3 / 5)
    expected = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(11)) / 5
    assert metrics["ndcg@10"] == pytest.approx(expected)
    assert metrics_from_ranks(np.array([], dtype=np.int64), 10) == {}


def test_sampled_rank_counts_ties_against_the_model_and_dedupes_negatives() -> None:
    # User 0: the test movie 0 scores 0.5. Negatives 1 (0.9, above), 2 (0.5, a tie: above),
    # 3 (0.1, below), a duplicate of 1 (counted once) and 0 itself (the test item: dropped).
    table = np.array([[0.5, 0.9, 0.5, 0.1]])
    cases = EvalCases(np.array([0], np.int32), np.array([0], np.int32), np.array([[1, 2, 3, 1, 0]], np.int32))
    assert sampled_ranks(TableScorer(table), cases).tolist() == [2]
    metrics = evaluate(TableScorer(table), cases, k=2)
    assert metrics["hr@2"] == 0.0
    metrics = evaluate(TableScorer(table), cases, k=3)
    assert metrics["hr@3"] == 1.0
    assert metrics["ndcg@3"] == pytest.approx(1 / math.log2(4))


def test_full_ranking_skips_seen_movies_and_reports_coverage() -> None:
    # 2 users x 6 movies. User 0 has seen movie 5 (the top score); its test movie 2 ranks behind
    # movie 4 only. User 1's test movie 0 is behind 1, 2 and 3.
    table = np.array(
        [
            [0.1, 0.2, 0.6, 0.3, 0.7, 0.99],
            [0.5, 0.9, 0.8, 0.7, 0.1, 0.2],
        ]
    )
    seen = positives_from_columns(
        np.array([0], np.int32),
        np.array([5], np.int32),
        np.ones(1, np.float32),
        np.zeros(1, np.int64),
        np.full(1, np.nan, np.float32),
        2,
        6,
    )
    cases = EvalCases(np.array([0, 1], np.int32), np.array([2, 0], np.int32), np.zeros((2, 1), np.int32))
    ranks, top = full_ranks(TableScorer(table), cases, seen_matrix(seen), 2)
    assert ranks.tolist() == [1, 3]
    assert set(top[0].tolist()) == {4, 2}
    assert set(top[1].tolist()) == {1, 2}
    metrics = evaluate(TableScorer(table), cases, seen_matrix(seen), k=2)
    assert metrics["full_hr@2"] == pytest.approx(0.5)
    assert metrics["full_recall@2"] == metrics["full_hr@2"]
    assert metrics["full_ndcg@2"] == pytest.approx((1 / math.log2(3)) / 2)
    assert metrics["coverage@2"] == pytest.approx(3 / 6)  # movies 1, 2 and 4


def test_slices_and_popularity() -> None:
    scorer = PopularityScorer(np.array([5, 3, 1, 0]))
    cases = EvalCases(
        np.array([0, 1], np.int32), np.array([1, 3], np.int32), np.array([[0, 2], [0, 1]], np.int32)
    )
    metrics = evaluate(scorer, cases, k=1, slices={"first": np.array([True, False])})
    assert sampled_ranks(scorer, cases).tolist() == [1, 2]
    assert metrics["hr@1"] == 0.0
    assert metrics["first/n_cases"] == 1.0
    assert metrics["first/hr@1"] == 0.0
    assert evaluate(scorer, cases, k=2)["hr@2"] == 0.5


def test_full_ranking_samples_cases_beyond_the_cap() -> None:
    rng = np.random.default_rng(1)
    table = rng.random((50, 30))
    cases = EvalCases(
        np.arange(50, dtype=np.int32), rng.integers(0, 30, 50).astype(np.int32), np.zeros((50, 1), np.int32)
    )
    empty = positives_from_columns(
        np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int64),
        np.zeros(0, np.float32), 50, 30,
    )  # fmt: skip
    metrics = evaluate(TableScorer(table), cases, seen_matrix(empty), k=5, max_full_cases=20)
    assert metrics["n_cases"] == 50.0
    assert metrics["full_n_cases"] == 20.0
    assert 0.0 <= metrics["full_hr@5"] <= 1.0
