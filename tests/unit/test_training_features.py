"""Features as of a cut-off: nothing after it leaks in; the snapshot and normalisation reproduce."""

from __future__ import annotations

import numpy as np
import pytest

from movierec.data.dataset import Dataset, InteractionKind, Interactions, Movies, Users
from training_job.data import implicit_feedback
from training_job.features import (
    DAY,
    compute_features,
    from_parquet_bytes,
    snapshot_files,
)
from training_job.sources.synthetic import SyntheticConfig, generate

CONFIG = SyntheticConfig(n_users=80, n_movies=60, n_events=2_500, seed=11)


def with_extra_events(data: Dataset, user: np.ndarray, movie: np.ndarray, when: np.ndarray) -> Dataset:
    inter = data.interactions
    n = len(user)
    return Dataset(
        data.name,
        data.users,
        data.movies,
        Interactions(
            np.concatenate([inter.user, user.astype(np.int32)]),
            np.concatenate([inter.movie, movie.astype(np.int32)]),
            np.concatenate([inter.value, np.full(n, 5.0, dtype=np.float32)]),
            np.concatenate([inter.timestamp, when.astype(np.int64)]),
            np.concatenate([inter.kind, np.full(n, InteractionKind.RATING, dtype=np.int8)]),
        ),
    )


def features_at(data: Dataset, cutoff: int) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    pairs = implicit_feedback(data, cutoff=cutoff)
    features = compute_features(pairs, data.users, data.movies, cutoff)
    return (
        features.users.raw,
        features.movies.raw,
        features.users.normalisation.mean + features.users.normalisation.std,
        features.movies.normalisation.mean + features.movies.normalisation.std,
    )


def test_events_after_the_cutoff_change_nothing() -> None:
    data = generate(CONFIG)
    cutoff = int(np.quantile(data.interactions.timestamp, 0.7))
    rng = np.random.default_rng(0)
    n = 500
    # Later events: re-ratings of pairs that exist before the cut-off, and brand-new pairs, some of
    # them at exactly the cut-off (which is exclusive).
    old = rng.choice(np.flatnonzero(data.interactions.timestamp < cutoff), size=n // 2)
    user = np.concatenate([data.interactions.user[old], rng.integers(0, len(data.users), n // 2)])
    movie = np.concatenate([data.interactions.movie[old], rng.integers(0, len(data.movies), n // 2)])
    when = cutoff + rng.integers(0, 30 * DAY, n)
    when[:10] = cutoff
    later = with_extra_events(data, user, movie, when)

    before = features_at(data, cutoff)
    after = features_at(later, cutoff)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_events_before_the_cutoff_do_change_features() -> None:
    data = generate(CONFIG)
    cutoff = int(np.quantile(data.interactions.timestamp, 0.7))
    earlier = with_extra_events(data, np.array([0]), np.array([1]), np.array([cutoff - 1]))
    assert not np.array_equal(features_at(data, cutoff)[1], features_at(earlier, cutoff)[1])


def test_hand_computed_values() -> None:
    day = DAY
    users = Users(ids=["a", "b"], region=["north", "south"])
    movies = Movies(
        ids=np.array([10, 20, 30], dtype=np.int64),
        titles=["x", "y", "z"],
        genres=[("Comedy",), ("Drama", "Comedy"), ()],
        year=np.array([1990, 0, 2010], dtype=np.int16),
    )
    interactions = Interactions(
        user=np.array([0, 0, 1], dtype=np.int32),
        movie=np.array([0, 1, 1], dtype=np.int32),
        value=np.array([4.0, 2.0, 1.0], dtype=np.float32),
        timestamp=np.array([100 * day, 95 * day, 50 * day], dtype=np.int64),
        kind=np.array([InteractionKind.RATING, InteractionKind.RATING, InteractionKind.WATCH], dtype=np.int8),
    )
    data = Dataset("hand", users, movies, interactions)
    as_of = 101 * day
    features = compute_features(implicit_feedback(data), users, movies, as_of)
    u = dict(zip(features.users.names, features.users.raw[0].tolist(), strict=True))
    assert u["activity_7d"] == pytest.approx(np.log1p(2))  # 1 and 6 days ago
    assert u["activity_all"] == pytest.approx(np.log1p(2))
    assert u["days_since_last"] == pytest.approx(np.log1p(1.0))
    assert u["mean_rating"] == pytest.approx(3.0)
    assert u["genre:Comedy"] == pytest.approx(1.0)  # both of a's movies are comedies
    assert u["genre:Drama"] == pytest.approx(0.5)
    assert u["region:north"] == 1.0
    assert u["region:south"] == 0.0
    m = dict(zip(features.movies.names, features.movies.raw[1].tolist(), strict=True))
    assert m["genre:Drama"] == 1.0
    assert m["genre:Comedy"] == 1.0
    assert m["year"] == pytest.approx(2000.0)
    assert m["year_unknown"] == 1.0  # the median known year
    assert m["popularity_all"] == pytest.approx(np.log1p(2))
    assert m["popularity_7d"] == pytest.approx(np.log1p(1))
    assert m["days_since_first"] == pytest.approx(np.log1p(51.0))
    global_mean = 3.0  # ratings 4 and 2; the watch has none
    assert m["mean_rating"] == pytest.approx((2.0 + 5 * global_mean) / (1 + 5))
    # Movie 30 has no pairs: it sets no statistics and gets the cold defaults.
    assert not features.movies.active[2]
    cold = dict(zip(features.movies.names, features.cold_movie, strict=True))
    assert cold["popularity_all"] == 0.0
    assert cold["mean_rating"] == pytest.approx(global_mean)


def test_snapshot_and_normalisation_reproduce_the_model_inputs() -> None:
    data = generate(CONFIG)
    cutoff = int(data.interactions.timestamp.max()) + 1
    features = compute_features(implicit_feedback(data), data.users, data.movies, cutoff)
    files = snapshot_files(features, data.users, data.movies)
    ids, names, raw = from_parquet_bytes(files["users.parquet"])
    assert ids == data.users.ids
    assert names == features.users.names
    assert np.array_equal(features.users.normalisation.apply(raw), features.users.normalised)
    movie_ids, movie_names, movie_raw = from_parquet_bytes(files["movies.parquet"])
    assert movie_ids == [str(m) for m in data.movies.ids]
    assert movie_names == features.movies.names
    assert np.array_equal(features.movies.normalisation.apply(movie_raw), features.movies.normalised)
    active = features.users.normalised[features.users.active]
    assert np.allclose(active.mean(axis=0), 0.0, atol=1e-4)
