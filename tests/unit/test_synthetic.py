"""The synthetic generator: determinism, shapes and invariants, skew, regional taste, scale."""

from __future__ import annotations

import tracemalloc
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec import segments
from movierec.data.dataset import Dataset, InteractionKind
from training_job.sources.synthetic import (
    GENRES,
    SyntheticConfig,
    SyntheticTruth,
    generate,
    generate_with_truth,
    region_names,
)

SMALL = SyntheticConfig(seed=11, n_users=300, n_movies=200, n_events=6_000, n_regions=4)


def assert_well_formed(data: Dataset, config: SyntheticConfig) -> None:
    users, movies, events = data.users, data.movies, data.interactions
    assert len(users) == config.n_users
    assert len(movies) == config.n_movies
    assert len(events) == config.n_events
    assert users.ids == [str(i) for i in range(1, config.n_users + 1)]
    assert set(users.region) == set(region_names(config.n_regions))  # every region has users
    assert len(users.gender) == len(users.age) == config.n_users
    assert set(users.gender) <= {"F", "M"}
    assert ((users.age >= 13) & (users.age <= 90)).all()
    assert movies.ids.tolist() == list(range(1, config.n_movies + 1))
    assert all(1 <= len(g) <= 3 and set(g) <= set(GENRES) for g in movies.genres)
    assert ((movies.year >= 1920) & (movies.year <= 2024)).all()
    assert all(t.endswith(f"({y})") for t, y in zip(movies.titles, movies.year.tolist(), strict=True))

    assert ((events.user >= 0) & (events.user < config.n_users)).all()
    assert ((events.movie >= 0) & (events.movie < config.n_movies)).all()
    start, end = config.start.timestamp(), config.end.timestamp()
    assert ((events.timestamp >= start) & (events.timestamp <= end)).all()
    rating = events.kind == InteractionKind.RATING
    watch = events.kind == InteractionKind.WATCH
    assert (rating | watch).all()
    stars = events.value[rating]
    assert ((stars >= 0.5) & (stars <= 5.0) & (stars * 2 == np.round(stars * 2))).all()
    completion = events.value[watch]
    assert ((completion >= 0.0) & (completion <= 1.0)).all()
    # Grouped by user, each history in time order, each movie at most once per user.
    assert (np.diff(events.user) >= 0).all()
    same_user = np.diff(events.user) == 0
    assert (np.diff(events.timestamp)[same_user] >= 0).all()
    pairs = events.user.astype(np.int64) * config.n_movies + events.movie
    assert len(np.unique(pairs)) == len(pairs)


def assert_same(a: Dataset, b: Dataset) -> None:
    assert a.name == b.name
    assert a.users.ids == b.users.ids
    assert a.users.region == b.users.region
    assert a.users.gender == b.users.gender
    assert np.array_equal(a.users.age, b.users.age)
    assert a.movies.titles == b.movies.titles
    assert a.movies.genres == b.movies.genres
    assert np.array_equal(a.movies.year, b.movies.year)
    for name in ("user", "movie", "value", "timestamp", "kind"):
        assert np.array_equal(getattr(a.interactions, name), getattr(b.interactions, name)), name


def test_same_seed_same_dataset() -> None:
    assert_same(generate(SMALL), generate(SMALL))


def test_different_seed_different_dataset() -> None:
    other = generate(SyntheticConfig(seed=12, n_users=300, n_movies=200, n_events=6_000, n_regions=4))
    data = generate(SMALL)
    assert other.name != data.name
    assert not np.array_equal(other.interactions.movie, data.interactions.movie)


def test_shapes_and_invariants() -> None:
    assert_well_formed(generate(SMALL), SMALL)


def test_default_config_is_the_demo_size() -> None:
    config = SyntheticConfig()
    data = generate(config)
    assert_well_formed(data, config)
    assert data.name == "synthetic(seed=7, users=2000, movies=1000, events=100000)"
    assert (np.bincount(data.interactions.user, minlength=config.n_users) >= 1).all()


def test_name_distinguishes_every_setting() -> None:
    assert SyntheticConfig(region_taste=2.0).name != SyntheticConfig().name
    assert SyntheticConfig(age_taste=1.0).name not in {
        SyntheticConfig().name,
        SyntheticConfig(region_taste=2.0).name,
    }
    assert SyntheticConfig(region_taste=2.0).name != SyntheticConfig(taste_weight=2.0).name
    assert "variant=" in SyntheticConfig(watch_share=0.1).name


@pytest.mark.parametrize(
    "changes",
    [
        {"n_users": 0},
        {"n_events": 300 * 200 + 1},
        {"n_regions": 301},
        {"watch_share": 1.5},
        {"end": datetime(2023, 1, 1, tzinfo=UTC)},
        {"start": datetime(2024, 1, 1)},  # naive
        {"rating_noise": -1.0},
        {"age_taste": -0.5},
    ],
)
def test_config_rejects_nonsense(changes: dict[str, object]) -> None:
    base: dict[str, object] = {"n_users": 300, "n_movies": 200, "n_events": 6_000, "n_regions": 4}
    with pytest.raises(ValueError, match=r"must|cannot"):
        SyntheticConfig(**{**base, **changes})  # type: ignore[arg-type]


@settings(derandomize=True, deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 60),
    n_movies=st.integers(1, 40),
    fill=st.floats(0.0, 1.0),
    n_regions=st.integers(1, 9),
    watch_share=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_invariants_hold_for_any_config(
    seed: int, n_users: int, n_movies: int, fill: float, n_regions: int, watch_share: float
) -> None:
    config = SyntheticConfig(
        seed=seed,
        n_users=n_users,
        n_movies=n_movies,
        n_events=max(1, round(fill * n_users * n_movies)),
        n_regions=min(n_regions, n_users),
        watch_share=watch_share,
    )
    data = generate(config)
    assert_well_formed(data, config)
    assert_same(data, generate(config))


# --- the properties that make it useful ---------------------------------------------------------------

MEDIUM = SyntheticConfig(seed=5, n_users=3_000, n_movies=800, n_events=150_000, n_regions=5)


@pytest.fixture(scope="module")
def medium() -> tuple[Dataset, SyntheticTruth]:
    return generate_with_truth(MEDIUM)


def top_movies(movie_rows: npt.NDArray[np.int32], n_movies: int, n: int = 10) -> set[int]:
    counts = np.bincount(movie_rows, minlength=n_movies)
    return set(np.argsort(-counts, kind="stable")[:n].tolist())


def test_popularity_is_skewed(medium: tuple[Dataset, SyntheticTruth]) -> None:
    data = medium[0]
    counts = np.sort(np.bincount(data.interactions.movie, minlength=MEDIUM.n_movies))[::-1]
    top_decile = counts[: MEDIUM.n_movies // 10].sum() / counts.sum()
    assert top_decile > 0.3  # uniform would be 0.1
    assert counts[0] > 10 * np.median(counts)


def test_regional_top_n_differs_from_global(medium: tuple[Dataset, SyntheticTruth]) -> None:
    data = medium[0]
    events = data.interactions
    region = np.asarray(data.users.region)[events.user]
    overall = top_movies(events.movie, MEDIUM.n_movies)
    overlaps = [
        len(top_movies(events.movie[region == name], MEDIUM.n_movies) & overall) / 10
        for name in region_names(MEDIUM.n_regions)
    ]
    assert all(overlap < 1.0 for overlap in overlaps), overlaps  # every region has its own top 10
    assert float(np.mean(overlaps)) < 0.8, overlaps


def test_age_taste_off_leaves_the_dataset_as_it_was(medium: tuple[Dataset, SyntheticTruth]) -> None:
    data, truth = medium
    assert not truth.age_offsets.any()
    # Same seed, age taste on: the same people (regions, ages, activity), different tastes.
    aged, aged_truth = generate_with_truth(replace(MEDIUM, age_taste=1.0))
    assert aged.users.region == data.users.region
    assert np.array_equal(aged.users.age, data.users.age)
    assert np.array_equal(np.bincount(aged.interactions.user), np.bincount(data.interactions.user))
    assert not np.array_equal(aged_truth.user_factors, truth.user_factors)
    bands = [segments.age_band(int(a)) for a in data.users.age.tolist()]
    assert [segments.AGE_BAND_STARTS[b] for b in aged_truth.user_age_band.tolist()] == [
        int(band.split("-")[0].rstrip("+")) for band in bands if band
    ]


def test_age_bands_prefer_their_own_movies_when_age_matters() -> None:
    config = replace(MEDIUM, region_taste=0.0, age_taste=2.0)
    data = generate(config)
    events = data.interactions
    band = np.asarray([segments.age_band(int(a)) for a in data.users.age.tolist()])[events.user]
    overall = top_movies(events.movie, config.n_movies)
    big = [b for b, n in Counter(band.tolist()).items() if n > 5_000]
    overlaps = [len(top_movies(events.movie[band == b], config.n_movies) & overall) / 10 for b in big]
    assert len(big) >= 3
    assert float(np.mean(overlaps)) < 0.8, overlaps


def test_ratings_follow_latent_affinity(medium: tuple[Dataset, SyntheticTruth]) -> None:
    data, truth = medium
    events = data.interactions
    affinity = truth.affinity(events.user, events.movie)
    rating = events.kind == InteractionKind.RATING
    assert float(np.corrcoef(affinity[rating], events.value[rating])[0, 1]) > 0.5
    watch = events.kind == InteractionKind.WATCH
    assert float(np.corrcoef(affinity[watch], events.value[watch])[0, 1]) > 0.3
    assert 3.3 < float(events.value[rating].mean()) < 4.2  # MovieLens-like, not all fives


def test_users_pick_movies_they_like(medium: tuple[Dataset, SyntheticTruth]) -> None:
    data, truth = medium
    affinity = truth.affinity(data.interactions.user, data.interactions.movie)
    rng = np.random.default_rng(0)
    random_pairs = truth.affinity(
        rng.integers(0, MEDIUM.n_users, 50_000).astype(np.int32),
        rng.integers(0, MEDIUM.n_movies, 50_000).astype(np.int32),
    )
    assert float(affinity.mean()) > float(random_pairs.mean()) + 0.3


@pytest.mark.slow
def test_a_million_events_in_bounded_memory() -> None:
    config = SyntheticConfig(seed=3, n_users=20_000, n_movies=3_000, n_events=1_000_000)
    tracemalloc.start()
    try:
        data = generate(config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    events = data.interactions
    assert len(events) == 1_000_000
    assert (np.diff(events.user) >= 0).all()
    assert (np.diff(events.timestamp)[np.diff(events.user) == 0] >= 0).all()
    final = sum(getattr(events, c).nbytes for c in ("user", "movie", "value", "timestamp", "kind"))
    # One users x movies float64 matrix alone would be 480 MB; blocks keep scratch near 2M cells.
    assert peak < final + 160 * 1024 * 1024, (peak, final)
