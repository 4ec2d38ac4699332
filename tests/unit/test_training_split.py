"""Temporal leave-last-out: test = each user's latest pair, validation = the one before."""

from __future__ import annotations

import numpy as np

from training_job.data import Positives, positives_from_columns
from training_job.split import leave_last_out, newest_movies, temporal_split


def pairs(rows: list[tuple[int, int, int]], n_users: int = 3, n_movies: int = 6) -> Positives:
    user, movie, time = (np.asarray(c) for c in zip(*rows, strict=True))
    n = len(rows)
    return positives_from_columns(
        user.astype(np.int32),
        movie.astype(np.int32),
        np.ones(n, dtype=np.float32),
        time.astype(np.int64),
        np.full(n, np.nan, dtype=np.float32),
        n_users,
        n_movies,
    )


ROWS = [(0, 0, 10), (0, 1, 30), (0, 2, 20), (0, 3, 40), (1, 4, 5), (2, 0, 7), (2, 5, 8)]


def test_leave_last_out_takes_each_users_latest_pair() -> None:
    rest, last = leave_last_out(pairs(ROWS))
    assert list(zip(last.user.tolist(), last.movie.tolist(), strict=True)) == [(0, 3), (2, 5)]
    # A user's only pair stays in training.
    assert (1, 4) in set(zip(rest.user.tolist(), rest.movie.tolist(), strict=True))
    assert len(rest) + len(last) == len(ROWS)


def test_temporal_split_validation_is_the_one_before_the_test_pair() -> None:
    split = temporal_split(pairs(ROWS))
    assert list(zip(split.test.user.tolist(), split.test.movie.tolist(), strict=True)) == [(0, 3), (2, 5)]
    assert list(zip(split.validation.user.tolist(), split.validation.movie.tolist(), strict=True)) == [(0, 1)]
    assert sorted(split.train.movie[split.train.user == 0].tolist()) == [0, 2]
    assert len(split.everything()) == len(ROWS)


def test_newest_movies_are_held_out_of_train_and_validation_only() -> None:
    data = pairs(ROWS)
    assert newest_movies(data, 0.2).tolist() == [3]  # first seen at t=40, the latest of 6 movies
    split = temporal_split(data, new_movie_fraction=0.2)
    assert split.new_movies.tolist() == [3]
    assert 3 not in split.train.movie
    assert 3 not in split.validation.movie
    assert 3 in split.test.movie  # its test pair measures item cold start


def test_ties_in_time_break_by_movie() -> None:
    _, last = leave_last_out(pairs([(0, 4, 10), (0, 2, 10), (0, 3, 10)]))
    assert last.movie.tolist() == [4]
