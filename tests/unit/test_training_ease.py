"""EASE against a direct dense computation of Steck's closed form, and λ chosen on validation only."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from training_job.data import Positives
from training_job.ease import EaseTooLargeError, fit_ease, fit_tuned_ease, tune_ease
from training_job.evaluate import EvalCases, evaluate, seen_matrix

N_USERS, N_MOVIES = 9, 14  # the last movie has no training pair


def dense_matrix(seed: int = 3) -> npt.NDArray[np.float64]:
    x = (np.random.default_rng(seed).random((N_USERS, N_MOVIES)) < 0.4).astype(np.float64)
    x[:, -1] = 0.0
    x[np.arange(N_USERS), np.arange(N_USERS)] = 1.0  # every user has a pair
    return x


def positives(x: npt.NDArray[np.float64]) -> Positives:
    user, movie = np.nonzero(x)
    n = len(user)
    return Positives(
        user.astype(np.int32),
        movie.astype(np.int32),
        np.full(n, 0.5, dtype=np.float32),  # event weights: EASE ignores them (binary X)
        np.arange(n, dtype=np.int64),
        np.zeros(n, dtype=np.float32),
        N_USERS,
        N_MOVIES,
    )


def direct_scores(x: npt.NDArray[np.float64], lam: float) -> npt.NDArray[np.float64]:
    """Steck 2019, eq. 8, on the whole catalogue (the empty column included)."""
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)[None, :]
    assert np.allclose(np.diag(b), 0.0)
    scores: npt.NDArray[np.float64] = x @ b
    return scores


@pytest.mark.parametrize("lam", [0.5, 10.0, 300.0])
def test_scores_match_the_closed_form(lam: float) -> None:
    x = dense_matrix()
    scorer = fit_ease(positives(x), lam)
    assert np.allclose(np.diag(scorer.b), 0.0)  # an item never predicts itself
    users = np.arange(N_USERS, dtype=np.int32)
    expected = direct_scores(x, lam)
    assert np.allclose(scorer.score_all(users), expected, atol=1e-5)
    candidates = np.stack([np.roll(np.arange(N_MOVIES), u)[:6] for u in users]).astype(np.int64)
    pairs = scorer.score_pairs(users, candidates)
    assert np.allclose(pairs, np.take_along_axis(expected, candidates, axis=1), atol=1e-5)
    assert np.all(scorer.score_all(users)[:, -1] == 0.0)  # no training pair: exactly 0


def test_the_scorer_works_with_evaluate() -> None:
    x = dense_matrix()
    train = positives(x)
    rng = np.random.default_rng(0)
    cases = EvalCases(
        np.arange(N_USERS, dtype=np.int32),
        rng.integers(0, N_MOVIES, N_USERS).astype(np.int32),
        rng.integers(0, N_MOVIES, (N_USERS, 5)).astype(np.int32),
    )
    metrics = evaluate(fit_ease(train, 10.0), cases, seen_matrix(train))
    assert {"hr@10", "ndcg@10", "full_hr@10", "coverage@10"} <= set(metrics)


def test_a_catalogue_above_the_cap_is_refused_with_the_reason() -> None:
    x = dense_matrix()
    items = int((x.sum(axis=0) > 0).sum())
    with pytest.raises(
        EaseTooLargeError, match=f"{items} items with training pairs is above the cap of {items - 1}"
    ):
        fit_ease(positives(x), 10.0, max_items=items - 1)
    assert fit_ease(positives(x), 10.0, max_items=items).b.shape == (items, items)


def flipped_cases(x: npt.NDArray[np.float64], low: float, high: float) -> tuple[EvalCases, EvalCases]:
    """A validation case that ``low`` ranks right and ``high`` wrong, and a test case the other way:
    one user, two movies they have not seen, whose order the two λ disagree on."""
    s_low, s_high = direct_scores(x, low), direct_scores(x, high)
    for u in range(N_USERS):
        unseen = np.flatnonzero(x[u] == 0)[:-1]  # not the empty movie (its score is 0 for every λ)
        for a in unseen:
            for b in unseen:
                if s_low[u, a] > s_low[u, b] + 1e-6 and s_high[u, a] < s_high[u, b] - 1e-6:
                    user = np.array([u], dtype=np.int32)
                    validation = EvalCases(user, np.array([a], np.int32), np.array([[b]], np.int32))
                    test = EvalCases(user, np.array([b], np.int32), np.array([[a]], np.int32))
                    return validation, test
    raise AssertionError("no pair of movies that the two λ order differently")


def test_lambda_is_chosen_on_validation_not_test() -> None:
    x = dense_matrix()
    train = positives(x)
    grid = (0.5, 50.0)
    validation, test = flipped_cases(x, *grid)
    assert tune_ease(train, validation, grid).best_params["lambda"] == 0.5
    assert tune_ease(train, test, grid).best_params["lambda"] == 50.0  # test would pick the other
    scorer, tuning = fit_tuned_ease(train, validation, train, grid)
    assert tuning.best_params["lambda"] == 0.5
    assert tuning.best_attrs["validation"] == {"hr@10": 1.0, "ndcg@10": 1.0}
    assert sorted(t["params"]["lambda"] for t in tuning.trials) == list(grid)
    assert np.allclose(scorer.score_all(np.arange(N_USERS, dtype=np.int32)), direct_scores(x, 0.5), atol=1e-5)


def test_the_walk_stops_where_no_neighbour_on_the_grid_is_better() -> None:
    x = dense_matrix()
    train = positives(x)
    rng = np.random.default_rng(1)
    validation = EvalCases(
        np.arange(N_USERS, dtype=np.int32),
        rng.integers(0, N_MOVIES - 1, N_USERS).astype(np.int32),
        rng.integers(0, N_MOVIES - 1, (N_USERS, 4)).astype(np.int32),
    )
    grid = (0.1, 1.0, 10.0, 100.0, 1_000.0)
    tuning = tune_ease(train, validation, grid)
    value = {t["params"]["lambda"]: (t["value"], t["attr_hr@10"]) for t in tuning.trials}
    assert tuning.trials[0]["params"]["lambda"] == 10.0  # the walk starts in the middle
    chosen = grid.index(tuning.best_params["lambda"])
    for neighbour in (chosen - 1, chosen + 1):
        if 0 <= neighbour < len(grid):
            assert value[grid[neighbour]] <= value[grid[chosen]]
    assert tuning.best_value == max(v for v, _ in value.values())
