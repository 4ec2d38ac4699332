"""One honest experiment, shared by ``fit`` (the scheduled job) and ``benchmark`` (NCF files):

1. carve a validation pair per user from the training pairs (leave-last-out);
2. tune ALS and NeuMF on that validation split only, within the time budget;
3. retrain both on all training pairs with the chosen parameters (NeuMF for its best epoch count);
4. export the NeuMF artifact and score the held-out test cases with it (numpy, as served), and the
   baselines with theirs: sampled and full-ranking metrics, coverage, cold-start slices. Popularity,
   segment popularity and EASE (λ from a fixed grid, outside the budget) are chosen on the same
   validation split; every row carries its ``validation_*`` metrics for the gate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv
import torch

from movierec.artifact import ArtifactMetadata, ModelArtifact, UserVector, Weights
from movierec.data.dataset import Movies, Users
from movierec.history import HISTORY_LENGTH
from movierec.recommend.online import RETRIEVAL_CANDIDATES
from training_job import baselines, ease
from training_job.baseline_suite import fit_baselines
from training_job.data import Positives
from training_job.evaluate import (
    EvalCases,
    FloatMatrix,
    IntArray,
    K,
    evaluate,
    metrics_from_ranks,
    sampled_ranks,
    seen_matrix,
)
from training_job.features import Features, compute_features
from training_job.model import NeuMF, NeuMFParams, export_weights, fit_fold_in
from training_job.progress import log
from training_job.sampling import sample_eval_negatives
from training_job.segment_choice import SegmentReport, TimedCases
from training_job.split import leave_last_out
from training_job.train import TrainData, TrainOptions, TrainResult, train_neumf, use_all_cores
from training_job.tune import TuneResult, tune_neumf

RECENT = HISTORY_LENGTH  # fold-in reads a user's latest movies, as many as serving reads
COLD_USER_PAIRS = 5  # users with at most this many training pairs form the cold-user slice
RETRIEVE = RETRIEVAL_CANDIDATES  # retrieved by the GMF dot product before NeuMF re-ranks, as serving does


@dataclass(frozen=True)
class ExperimentConfig:
    budget_seconds: float = 240.0  # tuning, ALS and NeuMF together
    als_share: float = 0.2  # of the budget
    params: NeuMFParams | None = None  # given: no NeuMF search (still early-stopped on validation)
    max_epochs: int = 40
    patience: int = 4
    seed: int = 7
    max_trials: int | None = None
    eval_negatives: int = 99
    progress: bool | None = None
    code_version: str = "unknown"
    threads: int | None = None  # None: every core
    ease_lambdas: tuple[float, ...] = ease.LAMBDAS
    ease_max_items: int = ease.MAX_ITEMS  # above: EASE skipped (logged, in params["ease"]["skipped"])


@dataclass(frozen=True)
class ExperimentInput:
    train: Positives  # every pair the final models learn from
    test: EvalCases  # held-out pairs and their sampled negatives
    users: Users  # rows match ``train.user``
    movies: Movies  # rows match ``train.movie``
    as_of: int  # epoch seconds, exclusive: the data cut-off
    test_time: npt.NDArray[np.int64] | None = None  # when each test pair happened (trending replay)


@dataclass
class ExperimentResult:
    artifact: ModelArtifact
    metrics: dict[str, float]
    baselines: dict[str, dict[str, float]]
    params: dict[str, Any]
    features: Features
    final: TrainResult
    neumf_tuning: TuneResult | None
    als_tuning: TuneResult
    validation_history: list[dict[str, float]]
    segments: SegmentReport
    timings: dict[str, float] = field(default_factory=dict)
    ease_tuning: TuneResult | None = None  # None: skipped (catalogue above the cap)


def tensors(features: Features) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(features.users.normalised), torch.from_numpy(features.movies.normalised)


def cold_movies(train: Positives) -> npt.NDArray[np.int64]:
    return np.flatnonzero(train.movie_counts() == 0).astype(np.int64)


@dataclass(frozen=True)
class _Tuned:
    params: NeuMFParams
    best_epoch: int
    validation_ndcg: float
    history: list[dict[str, float]]
    neumf: TuneResult | None
    als: TuneResult


def _tune(
    tune_train: Positives, data: TrainData, val_cases: EvalCases, config: ExperimentConfig, deadline: float
) -> tuple[_Tuned, dict[str, float]]:
    """ALS then NeuMF, both on the validation split only, within the budget."""
    timings: dict[str, float] = {}
    options = TrainOptions(
        config.max_epochs, config.patience, config.seed, progress=config.progress, threads=config.threads
    )
    tick = time.monotonic()
    als_budget = config.budget_seconds * config.als_share if config.params is None else config.budget_seconds
    als = baselines.tune_als(tune_train, val_cases, als_budget, config.seed, config.max_trials)
    timings["als_tuning_seconds"] = time.monotonic() - tick
    log("als tuned", trials=len(als.trials), ndcg=als.best_value, params=als.best_params)
    tick = time.monotonic()
    # ALS with the chosen settings pre-trains NeuMF's GMF branch (when a trial asks for it).
    mf = baselines.fit_als(tune_train, als.best_params, config.seed)
    data = replace(data, mf_factors=(mf.user_factors, mf.movie_factors))
    if config.params is None:
        neumf = tune_neumf(data, max(deadline - time.monotonic(), 1.0), options, max_trials=config.max_trials)
        tuned = _Tuned(
            NeuMFParams.from_dict(neumf.best_attrs["params"]),
            int(neumf.best_attrs["best_epoch"]),
            neumf.best_value,
            list(neumf.best_attrs["history"]),
            neumf,
            als,
        )
    else:
        params = config.params
        if params.gmf_init:
            params = replace(params, factors=mf.user_factors.shape[1])
        run = train_neumf(data, params, options)
        history = [asdict(h) for h in run.history]
        tuned = _Tuned(params, run.best_epoch, run.best_ndcg, history, None, als)
    timings["neumf_tuning_seconds"] = time.monotonic() - tick
    log("neumf tuned", ndcg=tuned.validation_ndcg, best_epoch=tuned.best_epoch, params=tuned.params.to_dict())
    return tuned, timings


def run_experiment(inp: ExperimentInput, config: ExperimentConfig) -> ExperimentResult:
    started = time.monotonic()
    timings: dict[str, float] = {"threads": float(use_all_cores(config.threads))}
    rng = np.random.default_rng(config.seed)
    tune_train, validation = leave_last_out(inp.train)
    val_negatives = sample_eval_negatives(inp.train, validation.user, config.eval_negatives, rng)
    val_cases = EvalCases(validation.user, validation.movie, val_negatives)
    tick = time.monotonic()
    tune_features = compute_features(tune_train, inp.users, inp.movies, inp.as_of)
    timings["features_seconds"] = time.monotonic() - tick
    user_x, movie_x = tensors(tune_features)
    tune_data = TrainData(tune_train, user_x, movie_x, val_cases, cold_movies(tune_train))
    tuned, tune_timings = _tune(tune_train, tune_data, val_cases, config, started + config.budget_seconds)
    timings |= tune_timings

    # ---- final model on every training pair, for the epoch count validation chose ----
    tick = time.monotonic()
    features = compute_features(inp.train, inp.users, inp.movies, inp.as_of)
    user_x, movie_x = tensors(features)
    als = baselines.fit_als(inp.train, tuned.als.best_params, config.seed)  # also the ALS baseline
    final_data = TrainData(
        inp.train, user_x, movie_x, None, cold_movies(inp.train), (als.user_factors, als.movie_factors)
    )
    final_options = TrainOptions(
        max(tuned.best_epoch, 1), seed=config.seed, progress=config.progress, threads=config.threads
    )
    final = train_neumf(final_data, tuned.params, final_options)
    timings["final_train_seconds"] = time.monotonic() - tick
    artifact = build_artifact(final.model, features, inp, tuned.params, config.code_version, tuned.best_epoch)

    tick = time.monotonic()
    seen = seen_matrix(inp.train)
    slices = test_slices(inp)
    metrics = evaluate(ArtifactScorer(artifact), inp.test, seen, K, slices)
    metrics |= fold_in_metrics(artifact, inp, config.seed)
    metrics |= two_stage_metrics(artifact, inp.test, seen)
    metrics["validation_ndcg@10"] = tuned.validation_ndcg
    best = [h for h in tuned.history if h["epoch"] == tuned.best_epoch]
    metrics["validation_hr@10"] = best[0]["val_hr"] if best else 0.0
    suite = fit_baselines(
        inp, tune_train, TimedCases(val_cases, validation.timestamp), tuned.als, als, seen, slices, config
    )
    results, chosen = suite.results, suite.chosen
    chosen["neumf"] = tuned.params.to_dict() | {"epochs": tuned.best_epoch}
    timings["evaluation_seconds"] = time.monotonic() - tick  # the baselines' fits included
    timings |= suite.timings
    timings |= {f"final_{k}": v for k, v in final.timings().items()}
    timings["total_seconds"] = time.monotonic() - started
    artifact = artifact.with_metadata(metrics=metrics, baselines=results, params=chosen)
    return ExperimentResult(
        artifact,
        metrics,
        results,
        chosen,
        features,
        final,
        tuned.neumf,
        tuned.als,
        tuned.history,
        suite.segments,
        timings,
        suite.ease_tuning,
    )


def test_slices(inp: ExperimentInput) -> dict[str, npt.NDArray[np.bool_]]:
    user_pairs = inp.train.user_counts()[inp.test.user]
    movie_pairs = inp.train.movie_counts()[inp.test.movie]
    return {"cold_users": user_pairs <= COLD_USER_PAIRS, "cold_movies": movie_pairs == 0}


# ---- the artifact -------------------------------------------------------------------------------------


def recent_means(train: Positives, movie_vectors: FloatMatrix, users: IntArray | None = None) -> FloatMatrix:
    """Per user, the mean of the vectors of their latest ``RECENT`` movies (rows of ``users``)."""
    counts = train.user_counts()
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.arange(len(train)) - start[train.user]
    recent = position >= counts[train.user] - RECENT
    user, movie = train.user[recent], train.movie[recent]
    weight = 1.0 / np.maximum(np.minimum(counts, RECENT), 1)[user]
    mean = sp.csr_matrix((weight, (user, movie)), shape=(train.n_users, train.n_movies)) @ movie_vectors
    out = np.asarray(mean, dtype=np.float32)
    return out if users is None else out[users]


def build_artifact(
    model: NeuMF,
    features: Features,
    inp: ExperimentInput,
    params: NeuMFParams,
    code_version: str,
    epochs: int,
) -> ModelArtifact:
    weights: dict[str, npt.NDArray[Any]] = dict(export_weights(model))
    weights[Weights.RETRIEVAL_BIAS] = retrieval_bias(model, inp.train)
    movie_vectors = np.hstack([weights[Weights.ITEM_GMF], weights[Weights.ITEM_MLP]])
    user_vectors = np.hstack([weights[Weights.USER_GMF], weights[Weights.USER_MLP]])
    weights[Weights.FOLD_IN] = fit_fold_in(user_vectors, recent_means(inp.train, movie_vectors))
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(np.ascontiguousarray(weights[name]).tobytes())
    now = datetime.now(UTC)
    metadata = ArtifactMetadata(
        model_version=f"{now:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}",
        created_at=now.isoformat(timespec="seconds"),
        data_cutoff=int(inp.as_of),
        code_version=code_version,
        user_ids=list(inp.users.ids),
        movie_ids=[int(m) for m in inp.movies.ids],
        user_features=features.users.normalisation,
        movie_features=features.movies.normalisation,
        cold_movie_features=features.cold_movie,
        factors=params.factors,
        mlp_layers=list(params.mlp_layers),
        params=params.to_dict() | {"epochs": epochs},
    )
    return ModelArtifact(weights, metadata)


@torch.no_grad()
def retrieval_bias(model: NeuMF, train: Positives, sample: int = 256) -> FloatMatrix:
    """Each movie's MLP term averaged over a sample of users with training pairs."""
    _, user_mlp, _, movie_mlp = model.entity_vectors()
    active = np.flatnonzero(train.user_counts() > 0)
    rng = np.random.default_rng(0)
    users = rng.choice(active, size=min(sample, len(active)), replace=False) if len(active) else active
    total = torch.zeros(movie_mlp.shape[0])
    for user in torch.from_numpy(users.astype(np.int64)):
        total += model.mlp_tower(user_mlp[user] + movie_mlp)
    out: FloatMatrix = (total / max(len(users), 1)).numpy().astype(np.float32)
    return out


class ArtifactScorer:
    """Evaluation through the numpy scorer the recommend function uses."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        self.n_movies = artifact.n_movies

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        return self.artifact.logits_many(users, movies)

    def score_all(self, users: IntArray) -> FloatMatrix:
        movies = np.broadcast_to(np.arange(self.n_movies, dtype=np.int64), (len(users), self.n_movies))
        return self.artifact.logits_many(users, movies)


class _FoldedScorer(ArtifactScorer):
    def __init__(self, artifact: ModelArtifact, vectors: UserVector, rows: npt.NDArray[np.int64]) -> None:
        super().__init__(artifact)
        self.vectors, self.rows = vectors, rows  # rows: user index -> row of ``vectors``

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        r = self.rows[users]
        return self.artifact.logits_many(UserVector(self.vectors.gmf[r], self.vectors.mlp[r]), movies)


def fold_in_metrics(artifact: ModelArtifact, inp: ExperimentInput, seed: int) -> dict[str, float]:
    """Sampled metrics for users the model is told nothing about but their recent movies: the
    fold-in map is refitted on 80% of users and scored on the other 20%'s test cases."""
    rng = np.random.default_rng(seed + 1)
    held = rng.random(inp.train.n_users) < 0.2
    movie_vectors = np.hstack([artifact.item_gmf, artifact.item_mlp])
    user_vectors = np.hstack([artifact.user_gmf, artifact.user_mlp])
    means = recent_means(inp.train, movie_vectors)
    mapping = fit_fold_in(user_vectors[~held], means[~held])
    probe = ModelArtifact(artifact.weights | {Weights.FOLD_IN: mapping}, artifact.metadata)
    cases = inp.test.take(held[inp.test.user])
    if len(cases) == 0:
        return {}
    vectors = probe.fold_in_means(means)
    rows = np.arange(inp.train.n_users, dtype=np.int64)
    folded = metrics_from_ranks(sampled_ranks(_FoldedScorer(probe, vectors, rows), cases), K, "fold_in/")
    known = metrics_from_ranks(sampled_ranks(ArtifactScorer(artifact), cases), K, "fold_in/known_")
    return folded | known | {"fold_in/n_cases": float(len(cases))}


def two_stage_metrics(artifact: ModelArtifact, cases: EvalCases, seen: sp.csr_matrix) -> dict[str, float]:
    """Full-ranking HR/NDCG@10 of what serving does: retrieve ``RETRIEVE`` unseen movies by the GMF dot
    product, re-rank them with NeuMF. A held-out movie outside the retrieved set is a miss."""
    ranks = np.full(len(cases), np.iinfo(np.int64).max // 2, dtype=np.int64)
    step = max(1, (1 << 17) // artifact.n_movies)
    for begin in range(0, len(cases), step):
        rows = slice(begin, begin + step)
        users, target = cases.user[rows], cases.movie[rows]
        retrieval = artifact.retrieval_scores(users)
        mask = seen[users].tocoo()
        retrieval[mask.row, mask.col] = -np.inf
        n = min(RETRIEVE, artifact.n_movies)
        top = np.argpartition(-retrieval, n - 1, axis=1)[:, :n]
        scores = artifact.logits_many(users, top)
        found = top == target[:, None]
        hit = found.any(axis=1)
        target_score = scores[np.arange(len(users)), found.argmax(axis=1)]
        rank = (scores >= target_score[:, None]).sum(axis=1) - 1
        ranks[rows] = np.where(hit, rank, ranks[rows])
    out = metrics_from_ranks(ranks, K, "two_stage_")
    # Share of held-out movies that retrieval alone puts in its candidate set.
    out[f"retrieval_hr@{RETRIEVE}"] = (
        float((ranks < np.iinfo(np.int64).max // 2).mean()) if len(ranks) else 0.0
    )
    return out
