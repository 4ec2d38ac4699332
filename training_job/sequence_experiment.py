"""The sequence model's honest experiment, on the same inputs and test cases as ``experiment.py``:

1. leave-last-out on the training pairs: each user's latest is the validation case (the same cases,
   negatives and seed as ``run_experiment``); windows of the rest are the training samples;
2. the loss probe: BCE and sampled softmax each train for an equal share of the budget, and the one
   with the better validation NDCG@10 continues for the rest of it (early-stopped on validation);
3. the best-validation weights are exported to a format-2 artifact, loaded back, and the test cases
   are scored through the numpy forward exactly as served: each test user's history is their latest
   ``HISTORY_LENGTH`` training pairs (validation pair included), as of the test pair's time.

No retraining on train + validation: the validation pair is one target per user (under 1% of the
samples at MovieLens scale), and the time is better spent training.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from movierec import sequence
from movierec.data.dataset import InteractionKind
from movierec.sequence import SequenceMetadata, SequenceModel, SequenceUserVector
from movierec.sequence_encoding import EncodedHistories, dataset_profiles, profile_names
from training_job.evaluate import EvalCases, FloatMatrix, IntArray, K, evaluate, seen_matrix
from training_job.experiment import ExperimentInput, cold_movies, test_slices
from training_job.features import Features, compute_features
from training_job.progress import log
from training_job.sampling import sample_eval_negatives
from training_job.sequence_data import Sequences, history_rows, latest_histories, training_windows
from training_job.sequence_model import SequenceNeuMF, SequenceParams, export_weights
from training_job.sequence_train import SequenceTrainData, SequenceTrainResult, Trainer, case_rows, device
from training_job.split import leave_last_out
from training_job.train import use_all_cores

PROBE = {"softmax": 32, "bce": 4}  # loss -> negatives per target in the probe
SUMMARY_KEYS = ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "full_recall@10", "coverage@10")


@dataclass(frozen=True)
class SequenceConfig:
    budget_seconds: float = 240.0  # probe + training, validation included
    params: SequenceParams | None = None  # given: no loss probe
    probe_share: float = 0.3  # of the budget, split evenly between the losses
    max_epochs: int = 200
    patience: int = 3
    seed: int = 7
    eval_negatives: int = 99
    code_version: str = "unknown"
    threads: int | None = None


@dataclass
class SequenceExperimentResult:
    model: SequenceModel  # loaded back from ``artifact_bytes``
    artifact_bytes: bytes
    metrics: dict[str, float]
    params: SequenceParams
    probe: dict[str, dict[str, float]]
    train: SequenceTrainResult
    timings: dict[str, float] = field(default_factory=dict)


class NumpySequenceScorer:
    """``evaluate.Scorer`` through the numpy artifact: user vectors from histories, then the head."""

    def __init__(
        self, model: SequenceModel, vectors: SequenceUserVector, rows: npt.NDArray[np.int64]
    ) -> None:
        self.model, self.vectors, self.rows = model, vectors, rows
        self.n_movies = model.n_movies

    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        r = self.rows[np.asarray(users, dtype=np.int64)]
        return self.model.logits_many(SequenceUserVector(self.vectors.gmf[r], self.vectors.mlp[r]), movies)

    def score_all(self, users: IntArray) -> FloatMatrix:
        movies = np.broadcast_to(np.arange(self.n_movies, dtype=np.int64), (len(users), self.n_movies))
        return self.score_pairs(users, movies)


def numpy_user_vectors(
    model: SequenceModel, histories: EncodedHistories, profiles: FloatMatrix, chunk: int = 512
) -> SequenceUserVector:
    parts = [
        model.user_vectors(history_rows(histories, slice(b, b + chunk)), profiles[b : b + chunk])
        for b in range(0, len(histories), chunk)
    ]
    if not parts:
        return SequenceUserVector(np.zeros((0, model.metadata.dim), np.float32),
                                  np.zeros((0, model.metadata.mlp_layers[0]), np.float32))  # fmt: skip
    return SequenceUserVector(np.concatenate([p.gmf for p in parts]), np.concatenate([p.mlp for p in parts]))


def build_sequence_artifact(
    model: SequenceNeuMF,
    features: Features,
    profile_features: list[str],
    as_of: int,
    movie_ids: list[int],
    params: SequenceParams,
    code_version: str,
    default_kind: int = int(InteractionKind.RATING),
) -> SequenceModel:
    weights = export_weights(model)
    digest = hashlib.sha256()
    for name in sorted(weights):
        digest.update(weights[name].tobytes())
    now = datetime.now(UTC)
    metadata = SequenceMetadata(
        model_version=f"{now:%Y%m%dT%H%M%SZ}-{digest.hexdigest()[:8]}",
        created_at=now.isoformat(timespec="seconds"),
        data_cutoff=int(as_of),
        code_version=code_version,
        movie_ids=movie_ids,
        movie_features=features.movies.normalisation,
        cold_movie_features=features.cold_movie,
        profile_features=profile_features,
        dim=params.dim,
        heads=params.heads,
        blocks=params.blocks,
        ffn_dim=params.ffn_dim,
        history_length=params.history_length,
        mlp_layers=list(params.mlp_layers),
        default_kind=default_kind,
        params=params.to_dict(),
    )
    return SequenceModel(weights, metadata)


def _probe(
    data: SequenceTrainData, base: SequenceParams, config: SequenceConfig, started: float
) -> tuple[Trainer, dict[str, dict[str, float]]]:
    """Each loss for an equal share of the probe budget; the better one on validation is returned."""
    share = config.budget_seconds * config.probe_share / len(PROBE)
    trainers: dict[str, Trainer] = {}
    report: dict[str, dict[str, float]] = {}
    for k, (loss, negatives) in enumerate(PROBE.items()):
        trainer = Trainer(data, replace(base, loss=loss, negatives=negatives), config.seed, started)
        run = trainer.run(config.max_epochs, config.patience, started + share * (k + 1))
        trainers[loss] = trainer
        report[loss] = {"validation_ndcg@10": run.best_ndcg, "epochs": float(len(run.history)),
                        "negatives": float(negatives)} | run.timings()  # fmt: skip
        log("sequence probe", loss=loss, ndcg=run.best_ndcg, epochs=len(run.history))
    best = max(trainers, key=lambda name: (report[name]["validation_ndcg@10"], name == "softmax"))
    return trainers[best], report


@dataclass(frozen=True)
class PreparedData:
    """What training reads (windows of the training pairs, validation cases) and what export needs."""

    data: SequenceTrainData
    features: Features  # of the training pairs (validation held out), as the model saw them
    profile_names: list[str]
    profiles: npt.NDArray[np.float32]


def prepare_data(inp: ExperimentInput, base: SequenceParams, config: SequenceConfig) -> PreparedData:
    """Leave-last-out validation (the cases, negatives and seed ``run_experiment`` draws) and the
    training windows of the rest."""
    rng = np.random.default_rng(config.seed)
    tune_train, validation = leave_last_out(inp.train)
    val_negatives = sample_eval_negatives(inp.train, validation.user, config.eval_negatives, rng)
    val_cases = EvalCases(validation.user, validation.movie, val_negatives)
    features = compute_features(tune_train, inp.users, inp.movies, inp.as_of)
    names = profile_names(inp.users)
    profiles = dataset_profiles(inp.users, names)
    length = base.history_length
    tune_seq = Sequences.from_positives(tune_train)
    data = SequenceTrainData(
        training_windows(tune_seq, length, base.window_stride),
        torch.from_numpy(features.movies.normalised),
        torch.from_numpy(profiles),
        val_cases,
        latest_histories(tune_seq, validation.user, validation.timestamp, length),
        cold_movies(tune_train),
    )
    return PreparedData(data, features, names, profiles)


def run_sequence_experiment(inp: ExperimentInput, config: SequenceConfig) -> SequenceExperimentResult:
    started = time.monotonic()
    timings: dict[str, float] = {"threads": float(use_all_cores(config.threads))}
    base = config.params or SequenceParams()
    length = base.history_length
    prepared = prepare_data(inp, base, config)
    data, features, names, profiles = (
        prepared.data,
        prepared.features,
        prepared.profile_names,
        prepared.profiles,
    )
    timings["data_seconds"] = time.monotonic() - started
    if config.params is None:
        trainer, probe = _probe(data, SequenceParams(), config, started)
    else:
        trainer, probe = Trainer(data, config.params, config.seed, started), {}
    run = trainer.run(config.max_epochs, config.patience, started + config.budget_seconds)
    log("sequence trained", loss=trainer.params.loss, ndcg=run.best_ndcg, best_epoch=run.best_epoch)
    timings["train_seconds"] = time.monotonic() - started - timings["data_seconds"]

    tick = time.monotonic()
    model = build_sequence_artifact(
        trainer.best_model(), features, names, inp.as_of, [int(m) for m in inp.movies.ids], trainer.params,
        config.code_version,
    )  # fmt: skip
    blob = sequence.save(model)
    loaded = sequence.load(blob)
    seq = Sequences.from_positives(inp.train)
    now = inp.test_time if inp.test_time is not None else np.full(len(inp.test), inp.as_of, dtype=np.int64)
    histories = latest_histories(seq, inp.test.user, now, length)
    vectors = numpy_user_vectors(loaded, histories, profiles[inp.test.user])
    scorer = NumpySequenceScorer(loaded, vectors, case_rows(inp.test, inp.train.n_users))
    metrics = evaluate(scorer, inp.test, seen_matrix(inp.train), K, test_slices(inp))
    metrics["validation_ndcg@10"] = run.best_ndcg
    metrics["validation_hr@10"] = run.best_hr
    timings["evaluation_seconds"] = time.monotonic() - tick
    timings["total_seconds"] = time.monotonic() - started
    timings |= run.timings()
    loaded = loaded.with_metadata(metrics=metrics)
    return SequenceExperimentResult(
        loaded, sequence.save(loaded), metrics, trainer.params, probe, run, timings
    )


def sequence_summary(result: SequenceExperimentResult) -> dict[str, Any]:
    """The benchmark's ``sequence`` entry: the same metric keys as ``model`` and ``baselines``."""
    out: dict[str, Any] = {k: result.metrics[k] for k in SUMMARY_KEYS if k in result.metrics}
    t = result.timings
    return out | {
        "validation_ndcg@10": result.metrics.get("validation_ndcg@10"),
        "validation_hr@10": result.metrics.get("validation_hr@10"),
        "params": result.params.to_dict() | {"epochs": result.train.best_epoch},
        "loss_probe": result.probe,
        "samples_per_second": t.get("samples_per_second"),
        "targets_per_second": t.get("targets_per_second"),
        "time_to_best_validation_seconds": t.get("time_to_best_seconds"),
        "train_seconds": t.get("train_seconds"),
        "artifact_bytes": len(result.artifact_bytes),
        "device": str(device()),
        "timings": t,
    }
