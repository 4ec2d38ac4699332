"""Dataset -> implicit-feedback pairs, and the NCF file format."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from movierec.data.dataset import (
    Dataset,
    InteractionKind,
    Interactions,
    Movies,
    Users,
    dataset_from_bytes,
    dataset_to_bytes,
)
from training_job.data import (
    EventWeights,
    NcfData,
    implicit_feedback,
    make_ncf_split,
    read_ncf,
    write_ncf,
)
from training_job.sources.synthetic import SyntheticConfig, generate

R, W, C, A = InteractionKind.RATING, InteractionKind.WATCH, InteractionKind.CLICK, InteractionKind.ADD_TO_LIST


def dataset(rows: list[tuple[int, int, float, int, int]], n_users: int = 3, n_movies: int = 4) -> Dataset:
    """rows: (user, movie, value, timestamp, kind)."""
    user, movie, value, timestamp, kind = (np.asarray(c) for c in zip(*rows, strict=True))
    return Dataset(
        "tiny",
        Users(ids=[f"u{i}" for i in range(n_users)], region=[""] * n_users),
        Movies(
            ids=np.arange(1, n_movies + 1, dtype=np.int64),
            titles=[f"m{i}" for i in range(n_movies)],
            genres=[("Drama",)] * n_movies,
            year=np.full(n_movies, 2000, dtype=np.int16),
        ),
        Interactions(
            user.astype(np.int32),
            movie.astype(np.int32),
            value.astype(np.float32),
            timestamp.astype(np.int64),
            kind.astype(np.int8),
        ),
    )


def test_pairs_are_merged_with_max_weight_first_time_and_last_rating() -> None:
    data = dataset(
        [
            (0, 1, 1.0, 50, C),  # click first...
            (0, 1, 4.0, 60, R),  # ...then a rating...
            (0, 1, 2.0, 70, R),  # ...then a re-rating: the last rating wins
            (0, 2, 0.5, 40, W),
            (1, 1, 1.0, 10, C),
        ]
    )
    pairs = implicit_feedback(data, EventWeights(rating=1.0, watch=0.8, click=0.5))
    assert pairs.user.tolist() == [0, 0, 1]
    assert pairs.movie.tolist() == [2, 1, 1]  # user 0 by time: movie 2 (t=40) before movie 1 (t=50)
    assert pairs.timestamp.tolist() == [40, 50, 10]
    assert pairs.weight.tolist() == pytest.approx([0.8, 1.0, 0.5])
    assert np.isnan(pairs.rating[0])
    assert pairs.rating[1] == 2.0
    assert np.isnan(pairs.rating[2])


def test_a_zero_weight_drops_that_kind() -> None:
    data = dataset([(0, 1, 1.0, 5, C), (0, 2, 1.0, 6, A)])
    pairs = implicit_feedback(data, EventWeights(click=0.0))
    assert pairs.movie.tolist() == [2]


def test_cutoff_filters_events_before_pairs_merge() -> None:
    data = dataset([(0, 1, 3.0, 10, R), (0, 1, 5.0, 100, R), (0, 2, 1.0, 100, W)])
    pairs = implicit_feedback(data, cutoff=100)
    assert pairs.movie.tolist() == [1]
    assert pairs.rating.tolist() == [3.0]  # the re-rating at the cut-off is not seen


def test_ncf_files_round_trip(tmp_path: Path) -> None:
    data, _ = make_ncf_split(generate(SyntheticConfig(n_users=40, n_movies=400, n_events=2_000, seed=3)))
    write_ncf(tmp_path, data)
    negative_lines = (tmp_path / "test.negative").read_text().splitlines()
    head, *items = negative_lines[0].split("\t")
    assert head == f"({data.test_user[0]},{data.test_movie[0]})"
    assert len(items) == 99
    back = read_ncf(tmp_path / "train.rating", tmp_path / "test.rating", tmp_path / "test.negative")
    assert isinstance(back, NcfData)
    for name in ("user", "movie", "timestamp"):
        assert np.array_equal(getattr(back.train, name), getattr(data.train, name))
    assert np.allclose(back.train.rating, np.nan_to_num(data.train.rating, nan=1.0))
    assert np.array_equal(back.test_user, data.test_user)
    assert np.array_equal(back.test_movie, data.test_movie)
    assert np.array_equal(back.negatives, data.negatives)


def test_make_ncf_split_holds_out_each_users_latest_pair() -> None:
    source = generate(SyntheticConfig(n_users=40, n_movies=400, n_events=2_000, seed=5))
    data, compact = make_ncf_split(source)
    train = data.train
    assert train.user.min() == 0
    assert train.movie.min() >= 0  # 0-based ids
    assert len(compact.users) == train.n_users
    assert len(compact.movies) == train.n_movies
    last_train_time = np.zeros(train.n_users, dtype=np.int64)
    np.maximum.at(last_train_time, train.user, train.timestamp)
    assert np.all(data.test_timestamp >= last_train_time[data.test_user])
    train_keys = set((train.user.astype(np.int64) * train.n_movies + train.movie).tolist())
    test_keys = (data.test_user.astype(np.int64) * train.n_movies + data.test_movie).tolist()
    assert not train_keys & set(test_keys)
    for user, movie, row in zip(data.test_user, data.test_movie, data.negatives, strict=True):
        seen = train.movie[train.user == user]
        picked = row[row >= 0]  # -1 pads a user with fewer than 99 unseen movies
        assert len(picked) == min(99, train.n_movies - len(seen) - 1)
        assert movie not in picked
        assert len(set(picked.tolist())) == len(picked)
        assert not np.isin(picked, seen).any()


def test_a_dataset_round_trips_with_its_user_columns_and_old_exports_still_load() -> None:
    users = Users(
        ids=["a", "b"],
        region=["eu", ""],
        gender=["F", "M"],
        age=np.asarray([30, 0], dtype=np.int16),
        occupation=["x", "y"],
        country=["DE", ""],
    )
    data = dataset([(0, 1, 4.0, 10, R)], n_users=2)
    data = Dataset(data.name, users, data.movies, data.interactions)

    loaded = dataset_from_bytes(dataset_to_bytes(data))

    assert loaded.users.country == ["DE", ""]
    assert loaded.users.region == users.region
    assert np.array_equal(loaded.users.age, users.age)
    # An export written before the country column: the header has no such key.
    with np.load(io.BytesIO(dataset_to_bytes(data))) as arrays:
        parts = {name: arrays[name] for name in arrays.files}
    header = json.loads(parts["header"].tobytes())
    del header["country"]
    parts["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **parts)
    assert dataset_from_bytes(buffer.getvalue()).users.country == []
