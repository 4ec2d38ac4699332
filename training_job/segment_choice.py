"""Segment popularity, chosen on validation and reported against global popularity on test.

1. Every definition in ``movierec.segments.CANDIDATES`` that the users support (the attribute known
   for at least ``MIN_COVERAGE`` of them, two or more segments with data) gets its shrinkage toward
   global popularity tuned on the validation split.
2. The definition with the best validation NDCG@10 (then HR@10; then the simpler) is chosen.
3. The trending blend weight is chosen for it on validation, replaying what the real-time counters
   held when each validation pair happened (``training_job.trending``).
4. With a test split, every candidate is refitted on all training pairs and scored on test; its lift
   is relative to global popularity on the same cases.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv

from movierec import segments
from movierec.data.dataset import Dataset, Users
from movierec.popularity import PopularityConfig
from training_job import baselines
from training_job.data import LongArray, Positives, implicit_feedback
from training_job.evaluate import EvalCases, K, evaluate, metrics_from_ranks, sampled_ranks
from training_job.publishing import PopularityPolicy
from training_job.split import concat, leave_last_out
from training_job.trending import (
    GLOBAL_GROUP,
    SERVING_WINDOW_SECONDS,
    blended_metrics,
    choose_weight,
    trending_counts,
)

HEADLINE = (f"hr@{K}", f"ndcg@{K}")
MIN_COVERAGE = 0.1
"""A definition whose attribute is known for fewer users than this is not tried."""
MIN_SEGMENT_PAIRS = PopularityConfig.min_segment_events
"""Segments publication would leave out (too few events) are scored as global here too."""
TRENDING_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
MIN_TRENDING_GAIN = 0.01
"""A trending weight must beat no trending by 1% (relative validation NDCG@10) to be chosen."""


@dataclass(frozen=True)
class TimedCases:
    """Held-out pairs and when each happened (for the trending replay; None: no replay)."""

    cases: EvalCases
    time: LongArray | None


@dataclass(frozen=True)
class Candidate:
    definition: str
    coverage: float  # share of users with training pairs whose segment is known
    segments: int  # segments with at least MIN_SEGMENT_PAIRS pairs
    shrink: float
    validation: dict[str, float]
    test: dict[str, float] = field(default_factory=dict)  # empty without a test split
    lift_pct: dict[str, float] = field(default_factory=dict)  # over global popularity, on test


@dataclass(frozen=True)
class SegmentReport:
    policy: PopularityPolicy
    candidates: list[Candidate]
    skipped: dict[str, str]  # definition -> why it was not tried
    global_validation: dict[str, float]
    global_test: dict[str, float]
    trending_validation: dict[float, dict[str, float]]  # weight -> the chosen segments' metrics
    trending_test: dict[str, float]  # the chosen segments with the chosen weight, on test
    trending_window_seconds: float

    def chosen(self) -> Candidate | None:
        return next((c for c in self.candidates if c.definition == self.policy.definition), None)

    def baseline(self) -> dict[str, float] | None:
        """The chosen segment popularity as a row of ``baselines`` (floats only): test metrics, lift."""
        chosen = self.chosen()
        if chosen is None or not chosen.test:
            return None
        return (
            chosen.test
            | {f"lift_{k}_pct": v for k, v in chosen.lift_pct.items()}
            | {f"validation_{k}": v for k, v in chosen.validation.items()}
            | {"shrink": chosen.shrink, "trending_weight": self.policy.trending_weight}
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the choice, each candidate's headline numbers, the trending grid."""
        return {
            "definition": self.policy.definition,
            "shrink": self.policy.shrink,
            "trending_weight": self.policy.trending_weight,
            "trending_window_seconds": self.trending_window_seconds,
            "candidates": {
                c.definition: {
                    "coverage": c.coverage,
                    "segments": c.segments,
                    "shrink": c.shrink,
                    **{f"validation_{k}": c.validation.get(k, 0.0) for k in HEADLINE},
                    **{k: c.test[k] for k in HEADLINE if k in c.test},
                    **{f"lift_{k}_pct": v for k, v in c.lift_pct.items()},
                }
                for c in self.candidates
            },
            "skipped": dict(self.skipped),
            "global": {
                **{f"validation_{k}": self.global_validation.get(k, 0.0) for k in HEADLINE},
                **{k: self.global_test[k] for k in HEADLINE if k in self.global_test},
            },
            "trending_validation_ndcg@10": {
                str(w): m.get(f"ndcg@{K}", 0.0) for w, m in self.trending_validation.items()
            },
            "trending_test": dict(self.trending_test),
        }


def choose_segment_popularity(
    tune_train: Positives,
    validation: TimedCases,
    users: Users,
    train: Positives | None = None,
    test: TimedCases | None = None,
    seen: sp.csr_matrix | None = None,
    slices: Mapping[str, npt.NDArray[np.bool_]] | None = None,
    global_test: Mapping[str, float] | None = None,
    window_seconds: float = SERVING_WINDOW_SECONDS,
) -> SegmentReport:
    """Choose on ``validation`` (models fitted on ``tune_train``); with ``train`` and ``test``, refit on
    ``train`` and report every candidate on ``test`` against ``global_test`` (global popularity's
    metrics on the same cases; computed when not given). ``users`` rows match the pairs' users."""
    global_validation = metrics_from_ranks(
        sampled_ranks(baselines.popularity(tune_train), validation.cases), K
    )
    candidates, skipped = _tune_candidates(tune_train, validation.cases, users)
    best = max(
        candidates, key=lambda c: baselines.ranking_key(c.validation), default=None
    )  # max keeps the first of equals
    definition = best.definition if best else segments.DEFAULT_DEFINITION
    shrink = best.shrink if best else PopularityPolicy().shrink

    trending_validation = _blend(
        tune_train, validation, users, definition, shrink, best is not None, window_seconds
    )
    policy = PopularityPolicy(definition, shrink, choose_weight(trending_validation, MIN_TRENDING_GAIN))

    tested_global: dict[str, float] = {}
    trending_test: dict[str, float] = {}
    if train is not None and test is not None:
        tested_global = (
            dict(global_test)
            if global_test is not None
            else evaluate(baselines.popularity(train), test.cases, seen, K, slices)
        )
        candidates = [_tested(c, train, test, users, seen, slices, tested_global) for c in candidates]
        weight = policy.trending_weight
        served = _blend(train, test, users, definition, shrink, best is not None, window_seconds, (weight,))
        if served:
            lift = {f"lift_{k}_pct": _lift(served[weight], tested_global, k) for k in HEADLINE}
            trending_test = served[weight] | lift
    return SegmentReport(
        policy,
        candidates,
        skipped,
        global_validation,
        tested_global,
        trending_validation,
        trending_test,
        window_seconds,
    )


def choose_for_dataset(dataset: Dataset, as_of: int, seed: int = 7) -> SegmentReport:
    """The same choice for a run that trains no model (``--popularity-only``): validation only."""
    from training_job.sampling import sample_eval_negatives  # imports torch: only when needed

    positives = implicit_feedback(dataset, cutoff=as_of)
    tune_train, held = leave_last_out(positives)
    negatives = sample_eval_negatives(positives, held.user, 99, np.random.default_rng(seed))
    validation = TimedCases(EvalCases(held.user, held.movie, negatives), held.timestamp)
    return choose_segment_popularity(tune_train, validation, dataset.users)


# ---- steps -------------------------------------------------------------------------------------------


def _tune_candidates(
    tune_train: Positives, validation: EvalCases, users: Users
) -> tuple[list[Candidate], dict[str, str]]:
    active = tune_train.user_counts() > 0
    candidates: list[Candidate] = []
    skipped: dict[str, str] = {}
    for definition in segments.CANDIDATES:
        names = segments.dataset_segments(definition, users)
        known = np.asarray([name is not None for name in names], dtype=bool)
        coverage = float(known[active].mean()) if active.any() else 0.0
        if coverage < MIN_COVERAGE:
            skipped[definition] = f"known for {coverage:.0%} of users"
            continue
        codes, found = baselines.user_segments(names, tune_train, MIN_SEGMENT_PAIRS)
        if len(found) - 1 < 2:
            skipped[definition] = f"fewer than two segments with {MIN_SEGMENT_PAIRS}+ pairs"
            continue
        choice = baselines.tune_segment_popularity(tune_train, codes, validation)
        candidates.append(Candidate(definition, coverage, len(found) - 1, choice.shrink, choice.validation))
    return candidates, skipped


def _tested(
    candidate: Candidate,
    train: Positives,
    test: TimedCases,
    users: Users,
    seen: sp.csr_matrix | None,
    slices: Mapping[str, npt.NDArray[np.bool_]] | None,
    global_test: Mapping[str, float],
) -> Candidate:
    scorer = baselines.segment_popularity(train, _codes(candidate.definition, users, train), candidate.shrink)
    metrics = evaluate(scorer, test.cases, seen, K, slices)
    lift = {k: _lift(metrics, global_test, k) for k in HEADLINE}
    return Candidate(
        candidate.definition,
        candidate.coverage,
        candidate.segments,
        candidate.shrink,
        candidate.validation,
        metrics,
        lift,
    )


def _blend(
    fitted_on: Positives,
    held: TimedCases,
    users: Users,
    definition: str,
    shrink: float,
    segmented: bool,
    window_seconds: float,
    weights: tuple[float, ...] = TRENDING_WEIGHTS,
) -> dict[float, dict[str, float]]:
    """Metrics per trending weight of the segments (global popularity when not ``segmented``) fitted
    on ``fitted_on``, blended with the trending each held-out pair's user would have been served.

    Trending counts ``fitted_on`` and the held-out pairs themselves (other users' held-out pairs before
    one's own are what the counters held; one's own is at the window's exclusive end)."""
    if held.time is None:
        return {}
    no_segment = np.zeros(fitted_on.n_users, dtype=np.int32)
    codes = _codes(definition, users, fitted_on) if segmented else no_segment
    scorer = baselines.segment_popularity(fitted_on, codes, shrink)
    region = no_segment
    if segmented and segments.includes_region(definition):
        # Ingest keeps counters for every region, however small: no minimum here.
        region = baselines.user_segments(segments.dataset_segments(segments.REGION, users))[0]
    # A user served global popularity (no segment, or one too small to publish) gets global trending.
    user = held.cases.user
    group = np.where(codes[user] > 0, region[user], GLOBAL_GROUP).astype(np.int32)
    counts = trending_counts(
        concat(fitted_on, _pairs(held.cases, held.time, fitted_on)), region if region.any() else None
    )
    return blended_metrics(scorer, held.cases, held.time, group, counts, weights, window_seconds)


def _codes(definition: str, users: Users, pairs: Positives) -> npt.NDArray[np.int32]:
    """Segment code per user, 0 for none or a segment too small to publish."""
    return baselines.user_segments(segments.dataset_segments(definition, users), pairs, MIN_SEGMENT_PAIRS)[0]


def _pairs(cases: EvalCases, time: LongArray, like: Positives) -> Positives:
    """Held-out cases as pairs (weight 1, no rating), to count in trending."""
    n = len(cases)
    return Positives(
        cases.user,
        cases.movie,
        np.ones(n, dtype=np.float32),
        time.astype(np.int64),
        np.full(n, np.nan, dtype=np.float32),
        like.n_users,
        like.n_movies,
    )


def _lift(metrics: Mapping[str, float], base: Mapping[str, float], key: str) -> float:
    """Relative change in percent; 0 when the base is 0 (nothing to be relative to)."""
    reference = base.get(key, 0.0)
    return 100.0 * (metrics.get(key, 0.0) / reference - 1.0) if reference > 0 else 0.0
