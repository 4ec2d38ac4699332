"""The artifact format and its numpy scorer: a round trip that scores exactly like the torch model."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from movierec import artifact
from movierec.artifact import ModelArtifact, UserVector
from training_job.data import implicit_feedback
from training_job.evaluate import EvalCases
from training_job.experiment import ExperimentInput, build_artifact, cold_movies
from training_job.features import compute_features
from training_job.model import NeuMF, NeuMFParams
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.train import TrainData, TrainOptions, train_neumf

PARAMS = NeuMFParams(factors=8, mlp_layers=(16, 8, 4), batch_size=1024, learning_rate=0.01)


@dataclass(frozen=True)
class Trained:
    model: NeuMF
    artifact: ModelArtifact
    cold: np.ndarray


@pytest.fixture(scope="module")
def trained() -> Trained:
    data = generate(SyntheticConfig(n_users=60, n_movies=80, n_events=1_500, seed=4))
    pairs = implicit_feedback(data)
    pairs = pairs.take(pairs.movie < 70)  # movies 70..79 have no pair: scored from features alone
    as_of = int(data.interactions.timestamp.max()) + 1
    features = compute_features(pairs, data.users, data.movies, as_of)
    cold = cold_movies(pairs)
    train = TrainData(
        pairs,
        torch.from_numpy(features.users.normalised),
        torch.from_numpy(features.movies.normalised),
        None,
        cold,
    )
    result = train_neumf(train, PARAMS, TrainOptions(max_epochs=2, progress=False, quiet=True, threads=1))
    empty = np.zeros(0, dtype=np.int32)
    inp = ExperimentInput(
        pairs, EvalCases(empty, empty, np.zeros((0, 1), np.int32)), data.users, data.movies, as_of
    )
    built = build_artifact(result.model, features, inp, PARAMS, "test", 2)
    return Trained(result.model, built, cold)


def torch_logits(model: NeuMF, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        logit, _, _ = model(
            torch.from_numpy(users.astype(np.int64)), torch.from_numpy(movies.astype(np.int64))
        )
    out: np.ndarray = logit.numpy()
    return out


def test_round_trip_preserves_weights_and_metadata(trained: Trained) -> None:
    data = artifact.save(trained.artifact)
    loaded = artifact.load(data)
    assert loaded.metadata == trained.artifact.metadata
    assert set(loaded.weights) == set(trained.artifact.weights)
    for name, array in trained.artifact.weights.items():
        assert np.array_equal(loaded.weights[name], array)
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:  # a plain npz + JSON inside
        assert json.loads(archive.read("metadata.json"))["format_version"] == artifact.FORMAT_VERSION
    assert np.load(__import__("io").BytesIO(data))["user_gmf"].shape == trained.artifact.user_gmf.shape


def test_numpy_scores_equal_torch_scores(trained: Trained) -> None:
    loaded = artifact.load(artifact.save(trained.artifact))
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(loaded.n_users), 20)
    movies = rng.integers(0, loaded.n_movies, len(users))
    expected = torch_logits(trained.model, users, movies)
    got = np.concatenate([loaded.logits(int(u), np.array([m])) for u, m in zip(users, movies, strict=True)])
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert np.abs(expected).max() > 1e-3  # a trained model, not a constant
    many = loaded.logits_many(users.reshape(-1, 20)[:, 0], movies.reshape(-1, 20))
    assert np.allclose(many.reshape(-1), expected, rtol=1e-5, atol=1e-5)
    probabilities = loaded.score(0, np.arange(loaded.n_movies))
    assert np.allclose(
        probabilities, 1 / (1 + np.exp(-loaded.logits(0, np.arange(loaded.n_movies)))), atol=1e-6
    )


def test_fresh_movie_features_score_as_torch_with_those_features(trained: Trained) -> None:
    loaded = artifact.load(artifact.save(trained.artifact))
    model = trained.model
    assert loaded.item_features is not None
    assert np.allclose(loaded.item_features, model.movies.features.numpy())  # exported as trained
    norm = loaded.metadata.movie_features
    rng = np.random.default_rng(1)
    movies = rng.choice(loaded.n_movies, 12, replace=False)
    raw = loaded.item_features[movies] * np.asarray(norm.std) + np.asarray(norm.mean)
    popularity = [j for j, name in enumerate(norm.names) if name.startswith("popularity_")]
    raw[:, popularity] += rng.uniform(0.5, 3.0, (len(movies), len(popularity)))  # trending since
    fresh = norm.apply(raw)

    changed = copy.deepcopy(model)
    changed.movies.features[torch.from_numpy(movies)] = torch.from_numpy(fresh)
    users = np.repeat(np.arange(0, loaded.n_users, 7), len(movies))
    candidates = np.tile(movies, len(users) // len(movies))
    expected = torch_logits(changed, users, candidates)
    got = np.concatenate([loaded.logits(int(u), movies, fresh) for u in users[:: len(movies)]])
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5)
    stale = np.concatenate([loaded.logits(int(u), movies) for u in users[:: len(movies)]])
    assert np.abs(got - stale).max() > 1e-3  # the features moved the scores
    assert np.allclose(stale, torch_logits(model, users, candidates), rtol=1e-5, atol=1e-5)


def test_an_artifact_without_item_features_scores_with_training_time_vectors(trained: Trained) -> None:
    weights = {k: v for k, v in trained.artifact.weights.items() if k != artifact.Weights.ITEM_FEATURES}
    older = ModelArtifact(weights, trained.artifact.metadata)
    assert older.item_features is None
    movies = np.arange(10)
    ignored = np.zeros((10, len(older.metadata.movie_features.names)), np.float32)
    assert np.array_equal(older.logits(0, movies, ignored), trained.artifact.logits(0, movies))


def test_id_maps(trained: Trained) -> None:
    loaded = trained.artifact
    meta = loaded.metadata
    assert loaded.user_index(meta.user_ids[5]) == 5
    assert loaded.user_index("nobody") is None
    assert loaded.movie_index(int(meta.movie_ids[7])) == 7
    assert loaded.movie_index(10**9) is None
    assert loaded.movie_indexes([meta.movie_ids[3], 10**9, meta.movie_ids[1]]).tolist() == [3, 1]
    assert loaded.movie_ids[7] == meta.movie_ids[7]


def test_retrieve_is_the_dot_product_top_n_without_excluded(trained: Trained) -> None:
    loaded = trained.artifact
    scores = loaded.item_gmf @ (loaded.user_gmf[3] * loaded.out_gmf) + loaded.retrieval_bias
    exclude = np.argsort(-scores)[:2]
    top = loaded.retrieve(3, 10, exclude=exclude)
    expected = [i for i in np.argsort(-scores, kind="stable") if i not in exclude][:10]
    assert top.tolist() == expected
    assert len(loaded.retrieve(3, 10_000)) == loaded.n_movies
    assert np.allclose(loaded.retrieval_scores(np.array([3]))[0], scores, atol=1e-6)


def test_similar_movies(trained: Trained) -> None:
    loaded = trained.artifact
    movie_id = int(loaded.movie_ids[0])
    ids, similarity = loaded.similar(movie_id, 5)
    assert len(ids) == 5
    assert movie_id not in ids.tolist()
    assert np.all(np.diff(similarity) <= 0)
    assert similarity.max() <= 1.0 + 1e-6
    assert len(loaded.similar(10**9, 5)[0]) == 0


def test_fold_in_of_an_unknown_user(trained: Trained) -> None:
    loaded = trained.artifact
    assert loaded.fold_in([10**9]) is None
    vector = loaded.fold_in([int(m) for m in loaded.movie_ids[:5]])
    assert isinstance(vector, UserVector)
    assert vector.gmf.shape == (PARAMS.factors,)
    assert vector.mlp.shape == (PARAMS.mlp_layers[0],)
    scores = loaded.score(vector, np.arange(loaded.n_movies))
    assert scores.shape == (loaded.n_movies,)
    assert np.isfinite(scores).all()
    assert len(loaded.retrieve(vector, 10, exclude=np.arange(5))) == 10


def test_a_new_movie_is_scored_from_genres_and_year(trained: Trained) -> None:
    loaded = trained.artifact
    cold = int(trained.cold[0])  # in the catalogue, never interacted with: ID embedding unused
    data = generate(SyntheticConfig(n_users=60, n_movies=80, n_events=1_500, seed=4))
    genres, year = data.movies.genres[cold], int(data.movies.year[cold])
    expected = loaded.score(2, np.array([cold]))
    got = loaded.cold_movie_scores(2, [genres], [year])
    assert np.allclose(got, expected, atol=1e-5)


def test_an_unknown_format_version_is_refused(trained: Trained) -> None:
    meta = trained.artifact.metadata
    raw = json.loads(meta.to_json())
    raw["format_version"] = 999
    with pytest.raises(ValueError, match="format_version"):
        artifact.ArtifactMetadata.from_json(json.dumps(raw).encode())


def test_the_artifact_module_does_not_import_torch() -> None:
    code = "import sys, movierec.artifact; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_format_version_is_read_from_the_metadata_alone(trained: Trained) -> None:
    assert artifact.format_version(artifact.save(trained.artifact)) == artifact.FORMAT_VERSION
    with pytest.raises(ValueError, match="not a model artifact"):
        artifact.format_version(b"not a zip")
    empty = __import__("io").BytesIO()
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="no format_version"):
        artifact.format_version(empty.getvalue())
