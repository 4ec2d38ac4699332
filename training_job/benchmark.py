"""``benchmark``: the NCF protocol on NCF-format files, NeuMF against popularity, tuned ALS and EASE.

Tuning sees a validation pair carved from ``train.rating`` (each user's latest), never the test file.
The gate's verdict (the model against the strongest baseline on validation) is printed with the rest.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_job.data import ncf_entities, read_ncf
from training_job.evaluate import EvalCases
from training_job.experiment import ExperimentConfig, ExperimentInput, ExperimentResult, run_experiment
from training_job.gate import decide, versus_strongest
from training_job.sequence_experiment import SequenceConfig, run_sequence_experiment, sequence_summary

MODEL_KEYS = ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "full_recall@10", "coverage@10")
BASELINE_KEYS = (*MODEL_KEYS, "validation_hr@10", "validation_ndcg@10")


@dataclass(frozen=True)
class BenchmarkFiles:
    train: Path
    test: Path
    negatives: Path


def run_benchmark(files: BenchmarkFiles, config: ExperimentConfig) -> tuple[dict[str, Any], ExperimentResult]:
    """(the JSON object the CLI prints, the full experiment result)."""
    started = time.monotonic()
    tick = time.monotonic()
    data = read_ncf(files.train, files.test, files.negatives)
    read_seconds = time.monotonic() - tick
    users, movies = ncf_entities(data.train.n_users, data.train.n_movies)
    as_of = int(data.train.timestamp.max()) + 1 if len(data.train) else 0
    cases = EvalCases(data.test_user, data.test_movie, data.negatives)
    inp = ExperimentInput(data.train, cases, users, movies, as_of, data.test_timestamp)
    result = run_experiment(inp, config)
    timings = result.timings
    chosen_history = result.validation_history
    best_epoch = int(result.params["neumf"]["epochs"])
    time_to_best = next((h["elapsed"] for h in chosen_history if h["epoch"] == best_epoch), 0.0)
    model: dict[str, Any] = {k: result.metrics[k] for k in MODEL_KEYS if k in result.metrics}
    model |= {
        "train_seconds": timings["final_train_seconds"],
        "params": result.params["neumf"],
        "samples_per_second": timings["final_samples_per_second"],
        "compute_samples_per_second": timings["final_compute_samples_per_second"],
        "data_pipeline_seconds": timings["final_data_seconds"],
        "data_pipeline_fraction": timings["final_data_fraction"],
        "epochs": best_epoch,
        "time_to_best_validation_seconds": time_to_best,
        "validation_ndcg@10": result.metrics.get("validation_ndcg@10"),
        "validation_hr@10": result.metrics.get("validation_hr@10"),
        "two_stage_hr@10": result.metrics.get("two_stage_hr@10"),
        "fold_in_hr@10": result.metrics.get("fold_in/hr@10"),
        "tuning": {
            "neumf_trials": len(result.neumf_tuning.trials) if result.neumf_tuning else 0,
            "als_trials": len(result.als_tuning.trials),
            "neumf_seconds": timings["neumf_tuning_seconds"],
            "als_seconds": timings["als_tuning_seconds"],
            "ease_trials": len(result.ease_tuning.trials) if result.ease_tuning else 0,
            "ease_seconds": timings.get("ease_seconds", 0.0),
        },
        "timings": {
            "read_seconds": read_seconds,
            "evaluation_seconds": timings["evaluation_seconds"],
            "total_seconds": time.monotonic() - started,
            "threads": timings["threads"],
            "load_average_1m": os.getloadavg()[0],
        },
    }
    gate = decide(result.metrics, result.baselines, None)
    model["gate"] = {"passed": gate.passed, "reason": gate.reason}
    model["versus_strongest"] = versus_strongest(result.metrics, result.baselines)
    base: dict[str, Any] = {
        name: {k: row[k] for k in BASELINE_KEYS if k in row} for name, row in result.baselines.items()
    }
    for name in ("als", "ease"):
        if name in base:
            base[name]["params"] = result.params[name]
    if "ease" not in base and "ease" in result.params:
        base["ease"] = dict(result.params["ease"])  # {"skipped": why}
    # The sequence model (no per-user weights), on the same inputs, test cases and budget.
    sequence_config = SequenceConfig(
        config.budget_seconds, seed=config.seed, code_version=config.code_version, threads=config.threads
    )
    sequence = run_sequence_experiment(inp, sequence_config)
    summary = sequence_summary(sequence)
    summary["versus_strongest"] = versus_strongest(sequence.metrics, result.baselines)
    return {"model": model, "sequence": summary, "baselines": base}, result
