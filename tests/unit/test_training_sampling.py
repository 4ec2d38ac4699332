"""Vectorised negative sampling never returns a positive."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training_job.data import Positives, positives_from_columns
from training_job.sampling import NegativeSampler, epoch_samples, sample_eval_negatives


def random_positives(seed: int, n_users: int, n_movies: int, density: float) -> Positives:
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_movies)) < density
    mask[:, 0] = True  # every user has at least one positive
    user, movie = np.nonzero(mask)
    n = len(user)
    return positives_from_columns(
        user.astype(np.int32),
        movie.astype(np.int32),
        np.ones(n, dtype=np.float32),
        rng.integers(0, 1_000, n).astype(np.int64),
        np.full(n, np.nan, dtype=np.float32),
        n_users,
        n_movies,
    )


def keys(user: np.ndarray, movie: np.ndarray, n_movies: int) -> set[int]:
    return set((user.astype(np.int64) * n_movies + movie).tolist())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), density=st.floats(0.05, 0.95))
def test_sampled_negatives_are_never_positives(seed: int, density: float) -> None:
    data = random_positives(seed, n_users=12, n_movies=30, density=density)
    if (data.user_counts() >= data.n_movies).any():
        return  # a user with every movie has no negative; covered below
    sampler = NegativeSampler(data, torch.Generator().manual_seed(seed))
    users = torch.from_numpy(np.repeat(np.arange(12, dtype=np.int64), 50))
    movies = sampler.sample(users).numpy()
    assert movies.min() >= 0
    assert movies.max() < data.n_movies
    assert not keys(users.numpy(), movies, data.n_movies) & keys(data.user, data.movie, data.n_movies)


def test_a_nearly_full_user_still_gets_exact_negatives() -> None:
    n_movies = 200
    movie = np.arange(n_movies - 1, dtype=np.int32)  # user 0 has all but the last movie
    data = positives_from_columns(
        np.zeros(len(movie), dtype=np.int32),
        movie,
        np.ones(len(movie), dtype=np.float32),
        np.arange(len(movie), dtype=np.int64),
        np.full(len(movie), np.nan, dtype=np.float32),
        1,
        n_movies,
    )
    sampler = NegativeSampler(data, torch.Generator().manual_seed(0))
    drawn = sampler.sample(torch.zeros(1_000, dtype=torch.int64))
    assert set(drawn.tolist()) == {n_movies - 1}


def test_a_user_with_every_movie_gets_no_negatives() -> None:
    data = random_positives(0, n_users=3, n_movies=5, density=0.3)
    full = positives_from_columns(
        np.concatenate([data.user, np.full(5, 3, np.int32)]),
        np.concatenate([data.movie, np.arange(5, dtype=np.int32)]),
        np.ones(len(data) + 5, np.float32),
        np.zeros(len(data) + 5, np.int64),
        np.full(len(data) + 5, np.nan, np.float32),
        4,
        5,
    )
    generator = torch.Generator().manual_seed(0)
    sampler = NegativeSampler(full, generator)
    with pytest.raises(ValueError, match="every movie"):
        sampler.sample(torch.tensor([3]))
    samples = epoch_samples(full, sampler, 2, generator)
    negative = samples.label == 0
    assert 3 not in samples.user[negative].tolist()
    assert int(negative.sum()) == 2 * len(data)


def test_epoch_samples_are_shuffled_and_seeded() -> None:
    data = random_positives(1, n_users=20, n_movies=50, density=0.2)

    def run() -> tuple[np.ndarray, ...]:
        generator = torch.Generator().manual_seed(42)
        samples = epoch_samples(data, NegativeSampler(data, generator), 4, generator)
        return samples.user.numpy(), samples.movie.numpy(), samples.label.numpy(), samples.weight.numpy()

    user, movie, label, weight = run()
    assert len(user) == 5 * len(data)
    assert label.sum() == len(data)
    positive = label == 1
    assert keys(user[positive], movie[positive], 50) == keys(data.user, data.movie, 50)
    assert not keys(user[~positive], movie[~positive], 50) & keys(data.user, data.movie, 50)
    assert np.all(weight[~positive] == 1.0)
    assert not np.all(label[: len(data)] == 1)  # shuffled, not positives first
    for a, b in zip((user, movie, label, weight), run(), strict=True):
        assert np.array_equal(a, b)


def test_eval_negatives_are_distinct_and_unseen() -> None:
    data = random_positives(2, n_users=30, n_movies=300, density=0.3)
    users = np.arange(30, dtype=np.int32)
    negatives = sample_eval_negatives(data, users, 99, np.random.default_rng(0))
    assert negatives.shape == (30, 99)
    positive = keys(data.user, data.movie, 300)
    for user, row in zip(users, negatives, strict=True):
        assert len(set(row.tolist())) == 99
        assert not keys(np.full(99, user), row, 300) & positive


def test_eval_negatives_pad_a_user_with_too_few_unseen_movies() -> None:
    data = random_positives(3, n_users=3, n_movies=40, density=0.5)
    negatives = sample_eval_negatives(data, np.arange(3, dtype=np.int32), 30, np.random.default_rng(0))
    for user, row in enumerate(negatives):
        unseen = 40 - int(data.user_counts()[user])
        picked = row[row >= 0]
        assert len(picked) == min(30, unseen) == len(set(picked.tolist()))
        assert not np.isin(picked, data.movie[data.user == user]).any()
