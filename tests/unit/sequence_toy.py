"""Tiny deterministic data for the sequence-model tests: each user walks a fixed cycle of movies, so
the next movie is a function of the latest one (and of nothing older)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from movierec.data.dataset import InteractionKind, Movies, Users
from training_job.data import Positives, positives_from_columns
from training_job.evaluate import EvalCases
from training_job.features import Features, compute_features
from training_job.sampling import sample_eval_negatives
from training_job.sequence_data import Sequences, latest_histories, training_windows
from training_job.sequence_model import SequenceParams
from training_job.sequence_train import SequenceTrainData, Trainer
from training_job.split import leave_last_out

N_MOVIES = 30
HOUR = 3_600
PARAMS = SequenceParams(
    dim=16, heads=2, blocks=1, ffn_dim=16, dropout=0.0, mlp_layers=(8, 4), history_length=8,
    learning_rate=0.01, batch_size=64, loss="softmax", negatives=8, item_id_dropout=0.0,
)  # fmt: skip


def cycle(seed: int = 0) -> np.ndarray:
    """successor[m]: one 30-cycle, so 8 steps never repeat a movie."""
    order = np.random.default_rng(seed).permutation(N_MOVIES)
    successor = np.empty(N_MOVIES, dtype=np.int64)
    successor[order] = np.roll(order, -1)
    return successor


def walks(n_users: int = 150, steps: int = 10, seed: int = 0) -> Positives:
    rng = np.random.default_rng(seed)
    successor = cycle(seed)
    movie = np.empty((n_users, steps), dtype=np.int64)
    movie[:, 0] = rng.integers(0, N_MOVIES, n_users)
    for s in range(1, steps):
        movie[:, s] = successor[movie[:, s - 1]]
    user = np.repeat(np.arange(n_users), steps)
    time = 1_700_000_000 + user * 10 + np.tile(np.arange(steps) * HOUR, n_users)
    return positives_from_columns(
        user.astype(np.int32),
        movie.reshape(-1).astype(np.int32),
        np.ones(user.size, np.float32),
        time.astype(np.int64),
        np.full(user.size, np.nan, np.float32),
        n_users,
        N_MOVIES,
    )


@dataclass(frozen=True)
class Toy:
    train: Positives
    features: Features  # of the training pairs (validation held out), as the model saw them
    data: SequenceTrainData
    trainer: Trainer


def train_toy(epochs: int = 25, seed: int = 0, profiles: int = 0, params: SequenceParams = PARAMS) -> Toy:
    torch.set_num_threads(1)
    pairs = walks(seed=seed)
    tune, validation = leave_last_out(pairs)
    seq = Sequences.from_positives(tune, np.full(len(tune), int(InteractionKind.WATCH)))
    negatives = sample_eval_negatives(pairs, validation.user, 20, np.random.default_rng(seed))
    cases = EvalCases(validation.user, validation.movie, negatives)
    rng = np.random.default_rng(seed + 1)
    movies = Movies(
        np.arange(1, N_MOVIES + 1), [""] * N_MOVIES, [()] * N_MOVIES, np.zeros(N_MOVIES, np.int16)
    )
    users = Users([str(u) for u in range(pairs.n_users)], [""] * pairs.n_users)
    features = compute_features(tune, users, movies, int(pairs.timestamp.max()) + 1)
    profile = np.eye(max(profiles, 1), dtype=np.float32)[rng.integers(0, max(profiles, 1), pairs.n_users)]
    data = SequenceTrainData(
        training_windows(seq, params.history_length),
        torch.from_numpy(features.movies.normalised),
        torch.from_numpy(profile[:, :profiles].copy()),
        cases,
        latest_histories(seq, validation.user, validation.timestamp, params.history_length),
    )
    trainer = Trainer(data, params, seed)
    trainer.run(epochs, patience=epochs, deadline=None)
    trainer.best_model()
    return Toy(pairs, features, data, trainer)
