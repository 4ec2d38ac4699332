"""Baselines trained and scored in the same run as NeuMF: popularity, regional popularity and
implicit-feedback ALS (the ``implicit`` library), each tuned on the same validation split."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import optuna
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from movierec.data.dataset import UNKNOWN
from training_job.data import Positives
from training_job.evaluate import (
    EvalCases,
    FactorScorer,
    PopularityScorer,
    SegmentScorer,
    metrics_from_ranks,
    sampled_ranks,
)
from training_job.tune import Deadline, TuneResult, run_study

K = 10
SHRINK_GRID = (0.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0)


def popularity(train: Positives) -> PopularityScorer:
    return PopularityScorer(train.movie_counts())


def user_segments(regions: list[str]) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Segment code per user (0 = unknown region) and the segment names."""
    names = sorted({r for r in regions if r != UNKNOWN})
    code = {name: i + 1 for i, name in enumerate(names)}
    return np.asarray([code.get(r, 0) for r in regions], dtype=np.int32), [UNKNOWN, *names]


def segment_popularity(train: Positives, user_segment: npt.NDArray[np.int32], shrink: float) -> SegmentScorer:
    """Per-segment counts shrunk toward global popularity: ``c_s(i) + shrink * c(i) / N``.

    The unknown segment (code 0) gets global popularity.
    """
    n_segments = int(user_segment.max(initial=0)) + 1
    counts = np.zeros((n_segments, train.n_movies), dtype=np.float64)
    np.add.at(counts, (user_segment[train.user], train.movie), 1.0)
    overall = train.movie_counts().astype(np.float64)
    prior = overall / max(overall.sum(), 1.0)
    table = counts + shrink * prior
    table[0] = overall
    return SegmentScorer(table.astype(np.float32), user_segment)


@dataclass(frozen=True)
class SegmentChoice:
    shrink: float
    validation_ndcg: float
    global_validation_ndcg: float


def tune_segment_popularity(
    train: Positives, user_segment: npt.NDArray[np.int32], validation: EvalCases
) -> SegmentChoice:
    """The shrinkage with the best validation NDCG@10 (and the global baseline's, for the lift)."""
    best = SegmentChoice(0.0, -1.0, 0.0)
    base = metrics_from_ranks(sampled_ranks(popularity(train), validation), K).get(f"ndcg@{K}", 0.0)
    for shrink in SHRINK_GRID:
        scorer = segment_popularity(train, user_segment, shrink)
        ndcg = metrics_from_ranks(sampled_ranks(scorer, validation), K).get(f"ndcg@{K}", 0.0)
        if ndcg > best.validation_ndcg:
            best = SegmentChoice(shrink, ndcg, base)
    return best


# ---- ALS ---------------------------------------------------------------------------------------------

ALS_DEFAULTS: dict[str, Any] = {"factors": 64, "regularization": 0.05, "alpha": 10.0, "iterations": 15}


def user_item_matrix(train: Positives) -> sp.csr_matrix:
    return sp.csr_matrix(
        (train.weight.astype(np.float32), (train.user, train.movie)), shape=(train.n_users, train.n_movies)
    )


def fit_als(train: Positives, params: dict[str, Any], seed: int) -> FactorScorer:
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit runs its own threads; a multi-threaded BLAS underneath would only fight them.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=int(params["factors"]),
            regularization=float(params["regularization"]),
            alpha=float(params["alpha"]),
            iterations=int(params["iterations"]),
            random_state=seed,
        )
        model.fit(user_item_matrix(train), show_progress=False)
    return FactorScorer(np.asarray(model.user_factors), np.asarray(model.item_factors))


def tune_als(
    train: Positives, validation: EvalCases, budget_seconds: float, seed: int, max_trials: int | None = None
) -> TuneResult:
    def objective(trial: optuna.Trial, deadline: Deadline) -> float:
        params = {
            "factors": trial.suggest_categorical("factors", [32, 64, 128, 256]),
            "regularization": trial.suggest_float("regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.5, 100.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
        }
        tick = time.perf_counter()
        scorer = fit_als(train, params, seed)
        trial.set_user_attr("fit_seconds", time.perf_counter() - tick)
        return metrics_from_ranks(sampled_ranks(scorer, validation), K).get(f"ndcg@{K}", 0.0)

    return run_study("als", objective, budget_seconds, seed, ALS_DEFAULTS, max_trials, prune=False)
