"""Every baseline of one experiment, fitted with its validation-chosen settings on all training pairs
and scored on the same test cases as the model: popularity, segment popularity (when users have
attributes to segment on), tuned ALS and EASE.

Each row carries its test metrics and its ``validation_*`` copies (the split the choices were made
on): the gate picks the champion on validation, the report shows who won on test."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv

from training_job import baselines, ease
from training_job.data import Positives
from training_job.evaluate import FactorScorer, K, evaluate
from training_job.progress import log
from training_job.segment_choice import SegmentReport, TimedCases, choose_segment_popularity
from training_job.tune import TuneResult

if TYPE_CHECKING:  # experiment imports this module
    from training_job.experiment import ExperimentConfig, ExperimentInput


@dataclass
class BaselineSuite:
    results: dict[str, dict[str, float]]  # name -> test metrics + validation_* metrics
    chosen: dict[str, Any]  # name -> the settings validation chose ("ease": {"skipped": why} if so)
    segments: SegmentReport
    ease_tuning: TuneResult | None  # None: skipped (catalogue above the cap)
    timings: dict[str, float] = field(default_factory=dict)


def validation_row(metrics: dict[str, float]) -> dict[str, float]:
    return {f"validation_{k}": v for k, v in metrics.items()}


def fit_baselines(
    inp: ExperimentInput,
    tune_train: Positives,
    validation: TimedCases,
    als_tuning: TuneResult,
    als: FactorScorer,
    seen: sp.csr_matrix,
    slices: dict[str, npt.NDArray[np.bool_]],
    config: ExperimentConfig,
) -> BaselineSuite:
    """``als`` is already refitted on all training pairs with ``als_tuning``'s settings."""
    tick = time.monotonic()
    results = {"popularity": evaluate(baselines.popularity(inp.train), inp.test, seen, K, slices)}
    report = choose_segment_popularity(
        tune_train,
        validation,
        inp.users,
        inp.train,
        TimedCases(inp.test, inp.test_time),
        seen,
        slices,
        results["popularity"],
    )
    chosen: dict[str, Any] = {
        "als": dict(als_tuning.best_params),
        "segment_popularity": report.policy.to_dict(),
    }
    segment_row = report.baseline()
    if segment_row is not None:
        results["segment_popularity"] = segment_row
    results["popularity"] |= validation_row(report.global_validation)
    als_validation = als_tuning.best_attrs.get("validation", {f"ndcg@{K}": als_tuning.best_value})
    results["als"] = evaluate(als, inp.test, seen, K, slices) | validation_row(als_validation)
    timings = {"baselines_seconds": time.monotonic() - tick}

    tick = time.monotonic()
    ease_tuning: TuneResult | None = None
    try:
        scorer, ease_tuning = ease.fit_tuned_ease(
            tune_train, validation.cases, inp.train, config.ease_lambdas, config.ease_max_items
        )
    except ease.EaseTooLargeError as error:
        log("ease skipped", reason=str(error))
        chosen["ease"] = {"skipped": str(error)}
    else:
        results["ease"] = evaluate(scorer, inp.test, seen, K, slices) | validation_row(
            ease_tuning.best_attrs["validation"]
        )
        chosen["ease"] = dict(ease_tuning.best_params)
        log("ease tuned", ndcg=ease_tuning.best_value, params=ease_tuning.best_params)
    timings["ease_seconds"] = time.monotonic() - tick
    return BaselineSuite(results, chosen, report, ease_tuning, timings)
