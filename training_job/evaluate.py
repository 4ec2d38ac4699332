"""Ranking metrics: sampled (HR/NDCG@K against ~99 negatives, the NCF protocol) and full ranking
(Recall/NDCG@K over every movie the user has not seen), catalogue coverage, and slices.

Ties count against the model (a negative scoring equal to the held-out movie ranks above it), as in
the reference evaluation, where the test item is inserted last and a stable sort keeps it last among
equals. A negative equal to the test item, or repeated in a row, is counted once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv

from training_job.data import Positives

IntArray = npt.NDArray[np.int32]
FloatMatrix = npt.NDArray[np.float32]
K = 10
"""The NCF protocol's cut-off (HR@10, NDCG@10; He et al. 2017): every metric, gate and search here."""
CHUNK_PAIRS = 1 << 18  # score at most this many (user, movie) pairs at a time


class Scorer(Protocol):
    n_movies: int

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        """Scores for ``movies`` (rows, candidates), one user per row."""

    def score_all(self, users: IntArray) -> FloatMatrix:
        """Scores for every movie, one row per user."""


@dataclass(frozen=True)
class EvalCases:
    """Held-out pairs to rank, with each one's sampled negatives."""

    user: IntArray
    movie: IntArray
    negatives: IntArray  # (cases, n)

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: npt.NDArray[np.bool_]) -> EvalCases:
        return EvalCases(self.user[rows], self.movie[rows], self.negatives[rows])


def metrics_from_ranks(ranks: npt.NDArray[np.int64], k: int, prefix: str = "") -> dict[str, float]:
    """HR@k and NDCG@k from 0-based ranks of the held-out item (one relevant item per case)."""
    if len(ranks) == 0:
        return {}
    hit = ranks < k
    gain = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return {f"{prefix}hr@{k}": float(hit.mean()), f"{prefix}ndcg@{k}": float(gain.mean())}


def valid_negatives(cases: EvalCases) -> npt.NDArray[np.bool_]:
    """False for padding (-1), a negative equal to the test item, or a repeat within its row."""
    negatives = cases.negatives
    valid = (negatives != cases.movie[:, None]) & (negatives >= 0)
    order = np.argsort(negatives, axis=1, kind="stable")
    ranked = np.take_along_axis(negatives, order, axis=1)
    repeat = np.zeros_like(valid)
    rows = np.arange(len(negatives))[:, None]
    repeat[rows, order[:, 1:]] = ranked[:, 1:] == ranked[:, :-1]
    out: npt.NDArray[np.bool_] = valid & ~repeat
    return out


def sampled_candidates(cases: EvalCases) -> npt.NDArray[np.int64]:
    """Per case, the held-out movie then its negatives. Padding (-1) becomes movie 0, to be ignored
    through ``valid_negatives``."""
    return np.concatenate([cases.movie[:, None], np.maximum(cases.negatives, 0)], axis=1).astype(np.int64)


def ranks_of_first(scores: npt.NDArray[np.floating], valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """0-based rank of column 0 among the valid other columns; ties count against it."""
    ahead = (scores[:, 1:] >= scores[:, :1]) & valid
    ranks: npt.NDArray[np.int64] = ahead.sum(axis=1).astype(np.int64)
    return ranks


def sampled_ranks(scorer: Scorer, cases: EvalCases) -> npt.NDArray[np.int64]:
    candidates = sampled_candidates(cases)
    valid = valid_negatives(cases)
    ranks = np.empty(len(cases), dtype=np.int64)
    step = max(1, CHUNK_PAIRS // candidates.shape[1])
    for start in range(0, len(cases), step):
        rows = slice(start, start + step)
        scores = scorer.score_pairs(cases.user[rows], candidates[rows])
        ranks[rows] = ranks_of_first(scores, valid[rows])
    return ranks


def seen_matrix(seen: Positives) -> sp.csr_matrix:
    data = np.ones(len(seen), dtype=np.int8)
    return sp.csr_matrix((data, (seen.user, seen.movie)), shape=(seen.n_users, seen.n_movies))


def full_ranks(
    scorer: Scorer, cases: EvalCases, seen: sp.csr_matrix, k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(rank of the held-out movie among all unseen movies, top-k movies per case)."""
    ranks = np.empty(len(cases), dtype=np.int64)
    top = np.empty((len(cases), k), dtype=np.int64)
    step = max(1, CHUNK_PAIRS // scorer.n_movies)
    for start in range(0, len(cases), step):
        rows = slice(start, start + step)
        users, movies = cases.user[rows], cases.movie[rows]
        scores = scorer.score_all(users).astype(np.float32, copy=True)
        local = np.arange(len(users))
        target = scores[local, movies].copy()
        mask = seen[users].tocoo()
        scores[mask.row, mask.col] = -np.inf
        scores[local, movies] = target  # the held-out movie is ranked even if seen as a negative
        ranks[rows] = (scores >= target[:, None]).sum(axis=1) - 1
        part = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        top[rows] = part
    return ranks, top


MAX_FULL_CASES = 20_000  # full ranking scores every movie per case: a seeded sample beyond this


def evaluate(
    scorer: Scorer,
    cases: EvalCases,
    seen: sp.csr_matrix | None = None,
    k: int = 10,
    slices: Mapping[str, npt.NDArray[np.bool_]] | None = None,
    max_full_cases: int = MAX_FULL_CASES,
) -> dict[str, float]:
    """Sampled metrics; with ``seen`` also full-ranking recall/NDCG and coverage; per-slice copies.

    Keys: ``hr@k``, ``ndcg@k``, ``full_recall@k`` (= ``full_hr@k``: one held-out item), ``full_ndcg@k``,
    ``coverage@k`` (share of the catalogue in anyone's full top-k), ``n_cases``, ``full_n_cases``
    (full ranking uses a seeded sample of at most ``max_full_cases``), and ``<slice>/<metric>`` plus
    ``<slice>/n_cases`` for each slice.
    """
    out: dict[str, float] = {"n_cases": float(len(cases))}
    sampled = sampled_ranks(scorer, cases)
    out |= metrics_from_ranks(sampled, k)
    full: npt.NDArray[np.int64] | None = None
    in_full = np.ones(len(cases), dtype=bool)
    if seen is not None:
        if len(cases) > max_full_cases:
            in_full[:] = False
            in_full[np.random.default_rng(0).choice(len(cases), max_full_cases, replace=False)] = True
        full, top = full_ranks(scorer, cases.take(in_full), seen, k)
        full_metrics = metrics_from_ranks(full, k, "full_")
        out |= full_metrics
        out["full_n_cases"] = float(len(full))
        out[f"full_recall@{k}"] = full_metrics.get(f"full_hr@{k}", 0.0)
        out[f"coverage@{k}"] = float(len(np.unique(top)) / scorer.n_movies) if len(top) else 0.0
    for name, mask in (slices or {}).items():
        out[f"{name}/n_cases"] = float(mask.sum())
        out |= metrics_from_ranks(sampled[mask], k, f"{name}/")
        if full is not None:
            out |= metrics_from_ranks(full[mask[in_full]], k, f"{name}/full_")
    return out


# ---- scorers -------------------------------------------------------------------------------------------


class PopularityScorer:
    """Every user gets the same ranking: by (weighted) number of training pairs."""

    def __init__(self, counts: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> None:
        self.counts = np.asarray(counts, dtype=np.float32)
        self.n_movies = len(self.counts)

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        return self.counts[movies]

    def score_all(self, users: IntArray) -> FloatMatrix:
        return np.broadcast_to(self.counts, (len(users), self.n_movies))


class SegmentScorer:
    """Per-segment popularity (e.g. region), each row a user's segment's scores."""

    def __init__(self, table: FloatMatrix, user_segment: IntArray) -> None:
        self.table = table  # (segments, movies)
        self.user_segment = user_segment
        self.n_movies = table.shape[1]

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        return self.table[self.user_segment[users][:, None], movies]

    def score_all(self, users: IntArray) -> FloatMatrix:
        return self.table[self.user_segment[users]]


class FactorScorer:
    """Dot product of user and movie factors (ALS)."""

    def __init__(self, user_factors: FloatMatrix, movie_factors: FloatMatrix) -> None:
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.movie_factors = np.ascontiguousarray(movie_factors, dtype=np.float32)
        self.n_movies = len(movie_factors)

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        out: FloatMatrix = np.einsum("bf,bmf->bm", self.user_factors[users], self.movie_factors[movies])
        return out

    def score_all(self, users: IntArray) -> FloatMatrix:
        out: FloatMatrix = self.user_factors[users] @ self.movie_factors.T
        return out
