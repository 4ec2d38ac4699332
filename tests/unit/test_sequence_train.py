"""The user tower reads history in order: on data where the next movie is a function of the latest
one, a trained toy model predicts it, the latest engagement moves the scores more than the oldest,
and permuting a history changes the score. Both losses train."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from movierec.sequence_encoding import encode_history
from tests.unit.sequence_toy import HOUR, N_MOVIES, PARAMS, Toy, cycle, train_toy
from training_job.sequence_model import SequenceNeuMF


@pytest.fixture(scope="module")
def toy() -> Toy:
    return train_toy(epochs=30)


def _logits(model: SequenceNeuMF, movies: np.ndarray) -> np.ndarray:
    n = len(movies)
    history = encode_history(movies, np.full(n, 1), np.arange(n) * HOUR, n * HOUR, N_MOVIES, 8)
    with torch.no_grad():
        out: np.ndarray = model.score_histories(history, None, torch.arange(N_MOVIES)[None])[0].numpy()
    return out


def _walk(start: int, steps: int) -> np.ndarray:
    successor, out = cycle(0), [start]
    for _ in range(steps - 1):
        out.append(int(successor[out[-1]]))
    return np.asarray(out)


def test_the_model_learns_that_the_latest_movie_decides_the_next(toy: Toy) -> None:
    assert toy.trainer.result.best_ndcg > 0.8  # validation: 20 sampled negatives, next = successor
    successor = cycle(0)
    hits = [int(np.argmax(_logits(toy.trainer.model, _walk(s, 6)))) == successor[_walk(s, 6)[-1]]
            for s in range(N_MOVIES)]  # fmt: skip
    assert np.mean(hits) > 0.8


def test_the_latest_engagement_matters_more_than_the_oldest(toy: Toy) -> None:
    model, rng = toy.trainer.model, np.random.default_rng(1)
    latest, oldest = [], []
    for start in range(N_MOVIES):
        walk = _walk(start, 6)
        base = _logits(model, walk)
        others = np.setdiff1d(np.arange(N_MOVIES), walk)
        for swap in rng.choice(others, 3, replace=False):
            latest.append(np.abs(_logits(model, np.r_[walk[:-1], swap]) - base).mean())
            oldest.append(np.abs(_logits(model, np.r_[swap, walk[1:]]) - base).mean())
    assert np.mean(latest) > 2 * np.mean(oldest)


def test_permuting_a_history_changes_the_score(toy: Toy) -> None:
    model = toy.trainer.model
    walk = _walk(0, 6)
    base = _logits(model, walk)
    for permutation in (walk[::-1], np.r_[walk[1:], walk[:1]], np.r_[walk[:-2], walk[-1], walk[-2]]):
        assert np.abs(_logits(model, permutation) - base).max() > 1e-2


@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_both_losses_train(loss: str) -> None:
    trained = train_toy(epochs=3, params=replace(PARAMS, loss=loss, negatives=4))
    history = trained.trainer.result.history
    assert trained.trainer.params.loss == loss
    assert history[-1].loss < history[0].loss
    assert trained.trainer.result.targets > 0
    assert trained.trainer.result.timings()["targets_per_second"] > 0
