"""The one call the scheduled pipeline makes: dataset in; artifact bytes, metrics, baselines, gate
decision, report and feature snapshot out. It never publishes and never exits."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from movierec import __version__, artifact
from movierec.data.dataset import Dataset
from training_job.data import EventWeights, Positives, implicit_feedback, subset_users
from training_job.ease import MAX_ITEMS
from training_job.evaluate import EvalCases
from training_job.experiment import ExperimentConfig, ExperimentInput, run_experiment
from training_job.features import snapshot_files
from training_job.gate import GateConfig, GateDecision, decide
from training_job.model import NeuMFParams
from training_job.report import build_report
from training_job.sampling import sample_eval_negatives
from training_job.split import concat, temporal_split

__all__ = ["FitConfig", "FitResult", "GateConfig", "GateDecision", "code_version", "fit"]


def code_version() -> str:
    """``movierec <version>`` plus the git commit when the code runs from a checkout."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"movierec {__version__}" + (f" ({sha})" if sha else "")


@dataclass(frozen=True)
class FitConfig:
    event_weights: EventWeights = field(default_factory=EventWeights)
    budget_seconds: float = 600.0  # tuning budget (ALS + NeuMF); retraining and evaluation come on top
    params: NeuMFParams | None = None  # given: skip the NeuMF search
    max_epochs: int = 40
    patience: int = 4
    new_movie_fraction: float = 0.02  # newest movies held out of training: the item cold-start slice
    gate: GateConfig = field(default_factory=GateConfig)
    seed: int = 7
    max_trials: int | None = None  # per search; None = as many as the budget allows
    progress: bool | None = None  # None: progress bars on a terminal, structured logs otherwise
    code_version: str = field(default_factory=code_version)
    threads: int | None = None  # torch threads; None: every core
    ease_max_items: int = MAX_ITEMS  # EASE (a dense item x item matrix) is skipped above this


@dataclass(frozen=True)
class FitResult:
    artifact_bytes: bytes  # movierec.artifact.save(...); movierec.artifact.load(...) reads it
    model_version: str
    data_cutoff: int  # epoch seconds, exclusive
    metrics: dict[str, float]  # the model on the held-out test pairs (see docs/training.md)
    baselines: dict[str, dict[str, float]]  # "popularity", "segment_popularity" (with segments), "als",
    # "ease" (unless skipped): test metrics and their validation_* copies, the gate's inputs
    gate: GateDecision
    params: dict[str, Any]  # chosen hyper-parameters: "neumf", "als", "segment_popularity", "ease"
    report_files: dict[str, bytes] = field(default_factory=dict)  # "report.html" + its PNGs
    feature_files: dict[str, bytes] = field(default_factory=dict)  # "users.parquet", "movies.parquet"
    timings: dict[str, float] = field(default_factory=dict)
    segments: dict[str, Any] = field(default_factory=dict)  # SegmentReport.to_dict(): choice and lifts


def _keep_users(positives: Positives, kept: np.ndarray) -> Positives:
    """Pairs of the ``kept`` users (sorted row indexes), renumbered 0..len(kept)-1."""
    rows = np.isin(positives.user, kept)
    picked = positives.take(rows)
    return Positives(
        np.searchsorted(kept, picked.user).astype(np.int32),
        picked.movie,
        picked.weight,
        picked.timestamp,
        picked.rating,
        len(kept),
        positives.n_movies,
    )


def fit(
    dataset: Dataset,
    config: FitConfig | None = None,
    cutoff: datetime | None = None,
    previous_metrics: Mapping[str, float] | None = None,
) -> FitResult:
    """Train, tune, evaluate and gate a NeuMF model on the interactions before ``cutoff``.

    ``cutoff`` (aware) defaults to just after the latest interaction. ``previous_metrics`` are the
    published model's ``FitResult.metrics`` (or its artifact's ``metadata.metrics``), for the gate.
    """
    config = config or FitConfig()
    started = time.monotonic()
    stamps = dataset.interactions.timestamp
    as_of = int(cutoff.timestamp()) if cutoff is not None else (int(stamps.max()) + 1 if len(stamps) else 0)
    positives = implicit_feedback(dataset, config.event_weights, as_of)
    split = temporal_split(positives, config.new_movie_fraction)
    train = concat(split.train, split.validation)
    kept = np.flatnonzero(train.user_counts() > 0)
    if len(kept) == 0:
        raise ValueError(f"{dataset.name}: no interactions before the cut-off {as_of}")
    train = _keep_users(train, kept)
    test = _keep_users(split.test, kept)
    everything = _keep_users(positives, kept)
    rng = np.random.default_rng(config.seed)
    negatives = sample_eval_negatives(everything, test.user, 99, rng)
    users = subset_users(dataset.users, kept)
    cases = EvalCases(test.user, test.movie, negatives)
    inp = ExperimentInput(train, cases, users, dataset.movies, as_of, test.timestamp)
    experiment = ExperimentConfig(
        budget_seconds=config.budget_seconds,
        params=config.params,
        max_epochs=config.max_epochs,
        patience=config.patience,
        seed=config.seed,
        max_trials=config.max_trials,
        progress=config.progress,
        code_version=config.code_version,
        threads=config.threads,
        ease_max_items=config.ease_max_items,
    )
    result = run_experiment(inp, experiment)
    gate = decide(result.metrics, result.baselines, previous_metrics, config.gate)
    model = result.artifact
    timings = dict(result.timings) | {"fit_seconds": time.monotonic() - started}
    summary = {
        "dataset": dataset.name,
        "model_version": model.metadata.model_version,
        "data_cutoff": datetime.fromtimestamp(as_of, UTC).isoformat(),
        "users": len(kept),
        "movies": len(dataset.movies),
        "training_pairs": len(train),
        "test_cases": len(test),
        "new_movies_held_out": len(split.new_movies),
        "code_version": config.code_version,
    }
    report = build_report(
        f"movierec training run {model.metadata.model_version}",
        result.metrics,
        result.baselines,
        result.params,
        timings,
        result.validation_history,
        {
            "NeuMF": result.neumf_tuning.trials if result.neumf_tuning else [],
            "ALS": result.als_tuning.trials,
            "EASE": result.ease_tuning.trials if result.ease_tuning else [],
        },
        summary,
        gate,
        result.segments.to_dict(),
    )
    return FitResult(
        artifact_bytes=artifact.save(model),
        model_version=model.metadata.model_version,
        data_cutoff=as_of,
        metrics=result.metrics,
        baselines=result.baselines,
        gate=gate,
        params=result.params,
        report_files=report,
        feature_files=snapshot_files(result.features, users, dataset.movies),
        timings=timings,
        segments=result.segments.to_dict(),
    )
