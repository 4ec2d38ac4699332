"""Baselines trained and scored in the same run as NeuMF: popularity, segment popularity and
implicit-feedback ALS (the ``implicit`` library), each tuned on the same validation split. EASE, the
fourth, is in ``training_job.ease``."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
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
    K,
    PopularityScorer,
    SegmentScorer,
    metrics_from_ranks,
    sampled_ranks,
)
from training_job.tune import Deadline, TuneResult, run_study

SHRINK_GRID = (0.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0)


def popularity(train: Positives) -> PopularityScorer:
    return PopularityScorer(train.movie_counts())


def user_segments(
    names: Sequence[str | None], train: Positives | None = None, min_pairs: int = 0
) -> tuple[npt.NDArray[np.int32], list[str]]:
    """Segment code per user (0 = none) and the segment names (index 0 is the empty name).

    With ``train``, segments with fewer than ``min_pairs`` pairs get code 0 as well: publication leaves
    such segments out (``PopularityConfig.min_segment_events``), so their users are served global."""
    named = [name or UNKNOWN for name in names]
    if train is not None and min_pairs > 0:
        pairs = Counter(named[u] for u in train.user.tolist())
        named = [name if pairs[name] >= min_pairs else UNKNOWN for name in named]
    segments = sorted({name for name in named if name != UNKNOWN})
    code = {name: i + 1 for i, name in enumerate(segments)}
    return np.asarray([code.get(name, 0) for name in named], dtype=np.int32), [UNKNOWN, *segments]


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
    validation: dict[str, float]  # hr@10 and ndcg@10 with that shrinkage
    global_validation: dict[str, float]  # global popularity's, for the lift


def tune_segment_popularity(
    train: Positives, user_segment: npt.NDArray[np.int32], validation: EvalCases
) -> SegmentChoice:
    """The shrinkage with the best validation NDCG@10 (HR@10 breaks ties; then the smaller one)."""
    base = metrics_from_ranks(sampled_ranks(popularity(train), validation), K)
    best: SegmentChoice | None = None
    for shrink in SHRINK_GRID:
        scorer = segment_popularity(train, user_segment, shrink)
        found = metrics_from_ranks(sampled_ranks(scorer, validation), K)
        if best is None or ranking_key(found) > ranking_key(best.validation):
            best = SegmentChoice(shrink, found, base)
    assert best is not None  # SHRINK_GRID is not empty
    return best


def ranking_key(metrics: Mapping[str, float]) -> tuple[float, float]:
    """What "better on validation" means for popularity baselines: NDCG@10, then HR@10."""
    return metrics.get(f"ndcg@{K}", 0.0), metrics.get(f"hr@{K}", 0.0)


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
        found = metrics_from_ranks(sampled_ranks(scorer, validation), K)
        trial.set_user_attr("validation", found)  # HR@10 too: the gate compares both
        return found.get(f"ndcg@{K}", 0.0)

    return run_study("als", objective, budget_seconds, seed, ALS_DEFAULTS, max_trials, prune=False)
