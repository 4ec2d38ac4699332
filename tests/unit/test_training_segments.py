"""Segment popularity in the training job: the definition, shrinkage and trending weight chosen on
validation, the lift reported on test, and what publication writes from the choice."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from movierec import segments
from movierec.data.dataset import Dataset, Users
from movierec.popularity import blend_with_trending
from movierec.publication import Manifest
from training_job.data import Positives, implicit_feedback, positives_from_columns
from training_job.evaluate import EvalCases, SegmentScorer, seen_matrix
from training_job.pipeline import FitDecision
from training_job.publishing import PopularityPolicy, compute_popularity
from training_job.sampling import sample_eval_negatives
from training_job.segment_choice import (
    SegmentReport,
    TimedCases,
    choose_for_dataset,
    choose_segment_popularity,
)
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.split import leave_last_out, temporal_split
from training_job.trending import WindowCounts, blended_metrics, trending_counts

DATA = SyntheticConfig(seed=4, n_users=600, n_movies=200, n_events=15_000, n_regions=4)


def validation_of(positives: Positives, seed: int = 0) -> tuple[Positives, TimedCases]:
    tune, held = leave_last_out(positives)
    negatives = sample_eval_negatives(positives, held.user, 99, np.random.default_rng(seed))
    return tune, TimedCases(EvalCases(held.user, held.movie, negatives), held.timestamp)


def choose(config: SyntheticConfig) -> SegmentReport:
    data = generate(config)
    tune, validation = validation_of(implicit_feedback(data))
    return choose_segment_popularity(tune, validation, data.users)


@pytest.mark.parametrize(
    ("region_taste", "age_taste", "favoured"),
    [(0.0, 2.0, "age_band"), (2.0, 0.0, "region"), (1.5, 1.5, "region+age_band")],
)
def test_the_choice_is_the_segment_the_data_was_built_to_favour(
    region_taste: float, age_taste: float, favoured: str
) -> None:
    report = choose(replace(DATA, region_taste=region_taste, age_taste=age_taste))

    assert report.policy.definition == favoured
    chosen = report.chosen()
    assert chosen is not None
    assert chosen.validation["ndcg@10"] > report.global_validation["ndcg@10"]
    # The synthetic data has no country column: those definitions are reported as skipped.
    assert set(report.skipped) == {"country", "country+age_band"}


def test_trending_that_carries_no_signal_gets_weight_zero() -> None:
    # Synthetic events fall at random times in each user's span: the last hours' counts are a noisy
    # sample of overall popularity and say nothing about what comes next.
    report = choose(DATA)

    assert report.policy.trending_weight == 0.0
    assert set(report.trending_validation) == {0.0, 0.1, 0.2, 0.3, 0.5}


def hot_movie_data(n_users: int = 400, n_movies: int = 60, slot: int = 10_800) -> Positives:
    """Background picks are uniform over movies and time; each user's last pick is the movie that is
    hot in their 3-hour slot, which other users are picking at the same time."""
    rng = np.random.default_rng(1)
    slots = 40
    user, movie, time = [], [], []
    for u in range(n_users):
        s = int(rng.integers(slots))
        end = s * slot + int(rng.integers(slot))
        hot = (s * 7) % n_movies
        background = rng.choice(np.setdiff1d(np.arange(n_movies), [hot]), size=8, replace=False)
        user += [u] * 9
        movie += [*background.tolist(), hot]
        time += [*np.sort(rng.integers(0, max(end, 1), size=8)).tolist(), end]
    n = len(user)
    return positives_from_columns(
        np.asarray(user), np.asarray(movie), np.ones(n, dtype=np.float32), np.asarray(time, dtype=np.int64),
        np.full(n, np.nan, dtype=np.float32), n_users, n_movies,
    )  # fmt: skip


def test_trending_that_predicts_the_next_pick_gets_a_weight() -> None:
    positives = hot_movie_data()
    tune, validation = validation_of(positives)
    users = Users(ids=[str(u) for u in range(positives.n_users)], region=[""] * positives.n_users)

    report = choose_segment_popularity(tune, validation, users)

    assert report.candidates == []  # nothing to segment on: global popularity, global trending
    assert report.policy.definition == segments.DEFAULT_DEFINITION
    assert report.policy.trending_weight > 0.0
    best = report.trending_validation[report.policy.trending_weight]["ndcg@10"]
    assert best > 1.5 * report.trending_validation[0.0]["ndcg@10"]


def test_the_lift_of_every_candidate_is_reported_on_test() -> None:
    data = generate(replace(DATA, age_taste=2.0, region_taste=0.5))
    split = temporal_split(implicit_feedback(data))
    train = split.train  # this test holds out validation inside train itself
    tune, validation = validation_of(train)
    negatives = sample_eval_negatives(split.everything(), split.test.user, 99, np.random.default_rng(2))
    test = TimedCases(EvalCases(split.test.user, split.test.movie, negatives), split.test.timestamp)

    report = choose_segment_popularity(tune, validation, data.users, train, test, seen_matrix(train))

    assert {c.definition for c in report.candidates} == {"region", "age_band", "region+age_band"}
    for candidate in report.candidates:
        for key in ("hr@10", "ndcg@10"):
            expected = 100 * (candidate.test[key] / report.global_test[key] - 1)
            assert candidate.lift_pct[key] == pytest.approx(expected)
    row = report.baseline()
    assert row is not None
    assert row["lift_hr@10_pct"] > 0
    assert row["lift_ndcg@10_pct"] > 0
    assert {"hr@10", "ndcg@10", "full_hr@10", "shrink", "trending_weight"} <= set(row)
    document = json.loads(json.dumps(report.to_dict()))  # JSON-ready, for the log and the report
    assert document["definition"] == report.policy.definition
    assert set(document["candidates"]) == {"region", "age_band", "region+age_band"}
    assert document["trending_test"]["hr@10"] == pytest.approx(report.trending_test["hr@10"])


def test_a_popularity_only_run_chooses_on_validation_alone() -> None:
    data = generate(replace(DATA, region_taste=0.0, age_taste=2.0))

    report = choose_for_dataset(data, int(data.interactions.timestamp.max()) + 1)

    assert report.policy.definition == "age_band"
    assert report.global_test == {}
    assert all(not c.test for c in report.candidates)


# ---- the trending replay ----------------------------------------------------------------------------------


def test_window_counts_match_a_brute_force_count() -> None:
    rng = np.random.default_rng(3)
    group = rng.integers(0, 3, 500).astype(np.int32)
    movie = rng.integers(0, 20, 500).astype(np.int32)
    time = rng.integers(1_000, 2_000, 500).astype(np.int64)
    counts = WindowCounts(group, movie, time, 20)
    q_group = rng.integers(0, 3, 40).astype(np.int32)
    q_movies = rng.integers(0, 20, (40, 5)).astype(np.int64)
    q_time = rng.integers(900, 2_200, 40).astype(np.int64)

    found, totals = counts.window(q_group, q_movies, q_time, 150)

    for i in range(40):
        inside = (group == q_group[i]) & (time >= q_time[i] - 150) & (time < q_time[i])
        assert totals[i] == inside.sum()
        for j in range(5):
            assert found[i, j] == (inside & (movie == q_movies[i, j])).sum()


def test_regional_trending_counts_a_pair_in_its_region_and_globally() -> None:
    pairs = positives_from_columns(
        np.asarray([0, 1, 2]), np.asarray([5, 5, 6]), np.ones(3, dtype=np.float32),
        np.asarray([10, 11, 12], dtype=np.int64), np.full(3, np.nan, dtype=np.float32), 3, 8,
    )  # fmt: skip
    counts = trending_counts(pairs, np.asarray([1, 2, 0], dtype=np.int32))

    found, totals = counts.window(
        np.asarray([0, 1, 2], dtype=np.int32), np.asarray([[5, 6]] * 3), np.asarray([20] * 3), 100
    )

    assert found.tolist() == [[2, 1], [1, 0], [1, 0]]
    assert totals.tolist() == [3, 1, 1]


def test_the_offline_blend_ranks_as_the_serving_blend() -> None:
    table = np.asarray([[5.0, 3.0, 1.0, 0.5, 0.0, 2.0]], dtype=np.float32)
    scorer = SegmentScorer(table, np.zeros(4, dtype=np.int32))
    # Four users' pairs in the window: movie 2 three times, movie 4 once.
    pairs = positives_from_columns(
        np.arange(4), np.asarray([2, 2, 2, 4]), np.ones(4, dtype=np.float32),
        np.asarray([100, 101, 102, 103], dtype=np.int64), np.full(4, np.nan, dtype=np.float32), 4, 6,
    )  # fmt: skip
    counts = trending_counts(pairs, None)
    for weight in (0.0, 0.3, 0.5, 0.9):
        served = blend_with_trending(list(enumerate(table[0].tolist())), {2: 3.0, 4: 1.0}, weight)
        assert len({score for _, score in served}) == 6  # no ties: ranks are unambiguous
        for rank, (target, _) in enumerate(served):  # each movie held out against all the others
            others = np.asarray([[m for m in range(6) if m != target]], dtype=np.int32)
            cases = EvalCases(np.zeros(1, dtype=np.int32), np.asarray([target], dtype=np.int32), others)
            metrics = blended_metrics(
                scorer, cases, np.asarray([200]), np.zeros(1, dtype=np.int32), counts, [weight], 1_000
            )
            assert metrics[weight]["ndcg@10"] == pytest.approx(1 / np.log2(rank + 2))


# ---- publication -------------------------------------------------------------------------------------


def test_the_manifest_carries_the_choice_and_old_manifests_mean_region() -> None:
    manifest = Manifest(
        version="v1",
        created_at=1.0,
        data_cutoff=2.0,
        segment_attribute="region+age_band",
        trending_weight=0.1,
    )
    assert Manifest.from_json(manifest.to_json()) == manifest

    legacy = {"version": "v0", "created_at": 1.0, "data_cutoff": 2.0, "segments": ["global"]}
    old = Manifest.from_json(json.dumps(legacy))
    assert (old.segment_attribute, old.trending_weight) == ("region", 0.3)
    assert PopularityPolicy() == PopularityPolicy("region", PopularityPolicy().shrink, 0.3)


def test_the_policy_travels_in_the_fit_decision() -> None:
    policy = PopularityPolicy("age_band", 100.0, 0.2)
    decision = FitDecision(True, "passed", "m1", None, {"hr@10": 0.5}, policy.to_dict())

    loaded = FitDecision.from_json(decision.to_json())

    assert loaded.popularity is not None
    assert PopularityPolicy.from_dict(loaded.popularity) == policy
    older = json.loads(decision.to_json())
    del older["popularity"]
    assert FitDecision.from_json(json.dumps(older).encode()).popularity is None
    with pytest.raises(ValueError, match="segment definition"):
        PopularityPolicy("gender")


def test_publication_writes_the_chosen_segments_region_segments_and_global() -> None:
    data: Dataset = generate(SyntheticConfig(seed=2, n_users=200, n_movies=60, n_events=4_000, n_regions=3))
    as_of = float(data.interactions.timestamp.max())

    lists = compute_popularity(data, set(), as_of, PopularityPolicy("age_band", 10.0, 0.0))

    names = set(lists)
    assert "global" in names
    assert {n for n in names if n.startswith("region=")} == {f"region={r}" for r in set(data.users.region)}
    ages = {n for n in names if n.startswith("age=")}
    assert ages
    assert ages <= {f"age={segments.age_band(int(a))}" for a in data.users.age}
    assert names == {"global"} | {n for n in names if n.startswith(("region=", "age="))}
    assert all(len(items) > 0 for items in lists.values())
