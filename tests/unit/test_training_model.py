"""NeuMF: cold movies are scored from features alone, pre-training fuses exactly, training is seeded."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from training_job.data import implicit_feedback
from training_job.evaluate import EvalCases
from training_job.features import compute_features
from training_job.model import NeuMF, NeuMFParams
from training_job.sampling import sample_eval_negatives
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.split import leave_last_out
from training_job.train import TrainData, TrainOptions, train_neumf

PARAMS = NeuMFParams(factors=8, mlp_layers=(16, 8, 4), batch_size=1024, learning_rate=0.01)
OPTIONS = TrainOptions(max_epochs=3, patience=5, progress=False, quiet=True, threads=1)


@pytest.fixture(scope="module")
def data() -> TrainData:
    dataset = generate(SyntheticConfig(n_users=80, n_movies=200, n_events=3_000, seed=9))
    pairs = implicit_feedback(dataset)
    pairs = pairs.take(pairs.movie < 190)  # movies 190..199 stay cold
    train, validation = leave_last_out(pairs)
    negatives = sample_eval_negatives(pairs, validation.user, 20, np.random.default_rng(0))
    features = compute_features(train, dataset.users, dataset.movies, int(pairs.timestamp.max()) + 1)
    cold = np.flatnonzero(train.movie_counts() == 0)
    return TrainData(
        train,
        torch.from_numpy(features.users.normalised),
        torch.from_numpy(features.movies.normalised),
        EvalCases(validation.user, validation.movie, negatives),
        cold,
    )


def logits(model: NeuMF, users: list[int], movies: list[int]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out, _, _ = model(torch.tensor(users), torch.tensor(movies))
    return torch.as_tensor(out)


def test_a_cold_movie_ignores_its_id_embedding(data: TrainData) -> None:
    assert data.cold_movies is not None
    assert len(data.cold_movies) > 0
    model = train_neumf(data, PARAMS, OPTIONS).model
    cold = int(data.cold_movies[0])
    before = logits(model, [0, 1, 2], [cold] * 3)
    with torch.no_grad():
        model.movies.gmf.weight[cold] += 5.0
        model.movies.mlp.weight[cold] += 5.0
    assert torch.equal(logits(model, [0, 1, 2], [cold] * 3), before)
    warm = int(np.flatnonzero(data.train.movie_counts() > 0)[0])
    changed = logits(model, [0], [warm])
    with torch.no_grad():
        model.movies.gmf.weight[warm] += 5.0
    assert not torch.equal(logits(model, [0], [warm]), changed)


def test_pretrained_branches_fuse_half_and_half(data: TrainData) -> None:
    torch.manual_seed(0)
    n_users, n_movies = data.train.n_users, data.train.n_movies
    args = (n_users, n_movies, data.user_features, data.movie_features, PARAMS)
    gmf, mlp, fused = NeuMF(*args, mode="gmf"), NeuMF(*args, mode="mlp"), NeuMF(*args)
    with torch.no_grad():
        for model in (gmf, mlp):
            model.out_bias.fill_(0.3 if model is gmf else -0.1)
    fused.load_pretrained(gmf, mlp)
    users, movies = [0, 3, 7, 9], [1, 5, 2, 8]
    expected = 0.5 * logits(gmf, users, movies) + 0.5 * logits(mlp, users, movies)
    assert torch.allclose(logits(fused, users, movies), expected, atol=1e-6)
    result = train_neumf(data, replace(PARAMS, pretrain_epochs=1), replace(OPTIONS, max_epochs=1))
    assert result.best_epoch == 1


@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_training_is_seeded_and_learns(data: TrainData, loss: str) -> None:
    params = replace(PARAMS, loss=loss)
    first = train_neumf(data, params, OPTIONS)
    second = train_neumf(data, params, OPTIONS)
    assert [h.loss for h in first.history] == [h.loss for h in second.history]
    assert first.history[-1].loss < first.history[0].loss
    assert first.best_ndcg > 0.0
    assert first.samples_per_second > 0.0
    assert first.best_epoch == max(first.history, key=lambda h: (h.val_ndcg, -h.epoch)).epoch


def test_gmf_branch_starts_from_mf_factors(data: TrainData) -> None:
    rng = np.random.default_rng(0)
    n_users, n_movies = data.train.n_users, data.train.n_movies
    users = rng.normal(size=(n_users, PARAMS.factors)).astype(np.float32)
    movies = rng.normal(size=(n_movies, PARAMS.factors)).astype(np.float32)
    params = replace(PARAMS, use_features=False)
    model = NeuMF(n_users, n_movies, data.user_features, data.movie_features, params, mode="gmf")
    model.load_mf(users, movies, scale=2.0)
    expected = 2.0 * (users[[1, 4]] * movies[[3, 0]]).sum(axis=1) - 1.0
    assert np.allclose(logits(model, [1, 4], [3, 0]).numpy(), expected, atol=1e-5)
    with_mf = replace(data, mf_factors=(users, movies))
    result = train_neumf(with_mf, replace(PARAMS, gmf_init=True), replace(OPTIONS, max_epochs=1))
    assert result.best_epoch == 1
    with pytest.raises(ValueError, match="mf_factors"):
        train_neumf(data, replace(PARAMS, gmf_init=True), OPTIONS)
