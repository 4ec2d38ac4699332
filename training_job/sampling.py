"""Vectorised negative sampling: uniform over movies, rejecting the user's positives.

Membership is a binary search over the sorted ``user * n_movies + movie`` keys, so a whole epoch's
negatives take a handful of tensor operations; only the rare rows that keep hitting positives are
redrawn, and a user who has seen nearly everything gets an exact draw from their complement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from training_job.data import Positives

MAX_ROUNDS = 32


def contains(sorted_keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """``queries in sorted_keys``, elementwise."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    position = torch.searchsorted(sorted_keys, queries).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[position] == queries


class NegativeSampler:
    """Draws movies a user has no positive for. ``exclude`` is every pair that must never be drawn."""

    def __init__(self, exclude: Positives, generator: torch.Generator) -> None:
        self.n_movies = exclude.n_movies
        self.keys = torch.from_numpy(np.sort(exclude.keys()))
        # A user with a positive for every movie has no negative; epoch_samples skips their rows.
        self.full = torch.from_numpy(exclude.user_counts() >= self.n_movies)
        self.generator = generator

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        """One negative movie per entry of ``users`` (int64)."""
        if bool(self.full[users].any()):
            raise ValueError("a user has a positive for every movie: no negative exists for them")
        n = self.n_movies
        movies = torch.randint(n, users.shape, generator=self.generator, dtype=torch.int64)
        redo = torch.nonzero(contains(self.keys, users * n + movies)).squeeze(1)
        for _ in range(MAX_ROUNDS):
            if redo.numel() == 0:
                return movies
            fresh = torch.randint(n, redo.shape, generator=self.generator, dtype=torch.int64)
            movies[redo] = fresh
            redo = redo[contains(self.keys, users[redo] * n + fresh)]
        if redo.numel():
            movies[redo] = self._exact(users[redo])
        return movies

    def _exact(self, users: torch.Tensor) -> torch.Tensor:
        """Draw from each user's complement directly (users with almost every movie as positive)."""
        out = torch.empty_like(users)
        for user in torch.unique(users).tolist():
            rows = torch.nonzero(users == user).squeeze(1)
            lo = torch.searchsorted(self.keys, torch.tensor(user * self.n_movies))
            hi = torch.searchsorted(self.keys, torch.tensor((user + 1) * self.n_movies))
            seen = self.keys[lo:hi] - user * self.n_movies
            allowed = torch.ones(self.n_movies, dtype=torch.bool)
            allowed[seen] = False
            choices = torch.nonzero(allowed).squeeze(1)
            pick = torch.randint(choices.numel(), rows.shape, generator=self.generator)
            out[rows] = choices[pick]
        return out


@dataclass(frozen=True)
class EpochSamples:
    """A shuffled epoch: every positive once plus ``negatives`` sampled negatives per positive."""

    user: torch.Tensor  # int64
    movie: torch.Tensor  # int64
    label: torch.Tensor  # float32, 1 or 0
    weight: torch.Tensor  # float32: the positive's event weight, 1 for negatives

    def __len__(self) -> int:
        return int(self.user.numel())


def epoch_samples(
    train: Positives, sampler: NegativeSampler, negatives: int, generator: torch.Generator
) -> EpochSamples:
    pos_user = torch.from_numpy(train.user.astype(np.int64))
    pos_movie = torch.from_numpy(train.movie.astype(np.int64))
    neg_user = pos_user.repeat(negatives)
    if bool(sampler.full.any()):
        neg_user = neg_user[~sampler.full[neg_user]]
    neg_movie = sampler.sample(neg_user)
    n_pos, n_neg = pos_user.numel(), neg_user.numel()
    user = torch.cat([pos_user, neg_user])
    movie = torch.cat([pos_movie, neg_movie])
    label = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)])
    weight = torch.cat([torch.from_numpy(train.weight), torch.ones(n_neg)])
    order = torch.randperm(n_pos + n_neg, generator=generator)
    return EpochSamples(user[order], movie[order], label[order], weight[order])


@dataclass(frozen=True)
class GroupedSamples:
    """A shuffled epoch for a listwise loss: each row is a positive and its own negatives."""

    user: torch.Tensor  # (rows,) int64
    movie: torch.Tensor  # (rows, 1 + negatives) int64, the positive first
    weight: torch.Tensor  # (rows,) float32: the positive's event weight

    def __len__(self) -> int:
        return int(self.movie.numel())


def grouped_samples(
    train: Positives, sampler: NegativeSampler, negatives: int, generator: torch.Generator
) -> GroupedSamples:
    user = torch.from_numpy(train.user.astype(np.int64))
    movie = torch.from_numpy(train.movie.astype(np.int64))
    weight = torch.from_numpy(train.weight)
    if bool(sampler.full.any()):  # no negative exists for them: nothing to rank against
        keep = ~sampler.full[user]
        user, movie, weight = user[keep], movie[keep], weight[keep]
    negative = sampler.sample(user.repeat_interleave(negatives)).view(-1, negatives)
    order = torch.randperm(user.numel(), generator=generator)
    grouped = torch.cat([movie[:, None], negative], dim=1)
    return GroupedSamples(user[order], grouped[order], weight[order])


def sample_eval_negatives(
    exclude: Positives, users: npt.NDArray[np.int32], n: int, rng: np.random.Generator
) -> npt.NDArray[np.int32]:
    """``n`` distinct movies per row of ``users`` that the user has no pair with in ``exclude``.

    A user with fewer than ``n`` such movies gets all of them, padded with -1 (never scored).
    """
    keys = np.sort(exclude.keys())
    n_movies = exclude.n_movies
    room = n_movies - exclude.user_counts()[users]
    out = np.full((len(users), n), -1, dtype=np.int64)
    crowded = room < 2 * n  # rejection would crawl: draw from the complement instead (rare users)
    for row in np.flatnonzero(crowded).tolist():
        user = int(users[row])
        lo, hi = np.searchsorted(keys, [user * n_movies, (user + 1) * n_movies])
        allowed = np.setdiff1d(np.arange(n_movies), keys[lo:hi] - user * n_movies)
        picked = rng.permutation(allowed)[:n]
        out[row, : len(picked)] = picked
    rest = np.flatnonzero(~crowded)
    out[rest] = _rejection_sample(keys, users[rest], n, n_movies, rng)
    return out.astype(np.int32)


def _rejection_sample(
    keys: npt.NDArray[np.int64], users: npt.NDArray[np.int32], n: int, n_movies: int, rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    base = users.astype(np.int64)[:, None] * n_movies
    candidates = rng.integers(n_movies, size=(len(users), n), dtype=np.int64)
    rows = np.arange(len(users))[:, None]
    for _ in range(10_000):
        query = base + candidates
        position = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
        bad = keys[position] == query if len(keys) else np.zeros(query.shape, dtype=bool)
        # A repeat within a row is bad too (the later occurrence is redrawn).
        order = np.argsort(candidates, axis=1, kind="stable")
        ranked = np.take_along_axis(candidates, order, axis=1)
        repeat = np.zeros_like(bad)
        repeat[rows, order[:, 1:]] = ranked[:, 1:] == ranked[:, :-1]
        bad |= repeat
        if not bad.any():
            return candidates
        candidates[bad] = rng.integers(n_movies, size=int(bad.sum()), dtype=np.int64)
    raise RuntimeError("negative sampling did not converge")
