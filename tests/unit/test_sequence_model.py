"""The sequence model's artifact: numpy scores equal torch's after a save/load round trip, an old
(format 1) artifact is refused with a clear error either way round, and nothing in it is per user."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch

from movierec import artifact, sequence
from movierec.data.dataset import InteractionKind, Movies, Users
from movierec.sequence import SequenceModel, SequenceWeights
from movierec.sequence_encoding import dataset_profiles, encode_history, profile_names
from tests.unit.sequence_toy import N_MOVIES, PARAMS, Toy, train_toy
from training_job.data import positives_from_columns
from training_job.features import compute_features
from training_job.sequence_experiment import build_sequence_artifact, numpy_user_vectors
from training_job.sequence_model import SequenceNeuMF
from training_job.sequence_train import SequenceScorer, case_rows


@pytest.fixture(scope="module")
def toy() -> Toy:
    return train_toy(epochs=4, profiles=3)


def _artifact(toy: Toy) -> SequenceModel:
    features = toy.features
    built = build_sequence_artifact(
        toy.trainer.model, features, ["region=a", "region=b", "age=25-34"], 0, list(range(1, N_MOVIES + 1)),
        PARAMS, "test", int(InteractionKind.WATCH),
    )  # fmt: skip
    return sequence.load(sequence.save(built))


def test_numpy_scores_equal_torch_scores_after_save_and_load(toy: Toy) -> None:
    model = toy.trainer.model
    loaded = _artifact(toy)
    cases, histories = toy.data.validation, toy.data.validation_histories
    assert cases is not None
    assert histories is not None
    profiles = toy.data.profiles[torch.from_numpy(cases.user.astype(np.int64))]
    expected_scorer = SequenceScorer(model, histories, profiles, case_rows(cases, toy.train.n_users))
    candidates = np.random.default_rng(0).integers(0, N_MOVIES, (len(cases), 25))
    expected = expected_scorer.score_pairs(cases.user, candidates)
    vectors = numpy_user_vectors(loaded, histories, profiles.numpy(), chunk=7)  # chunks of padded rows
    got = loaded.logits_many(sequence.SequenceUserVector(vectors.gmf, vectors.mlp), candidates)
    assert np.abs(expected).max() > 1e-2
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The serving call: one user from ids, kinds and times (no padding), with their profile hash.
    vector = loaded.user_vector([3, 4, 5], None, [0, 60, 7_200], {"region": "b"}, 9_000)
    assert vector is not None
    encoded = encode_history([2, 3, 4], [int(InteractionKind.WATCH)] * 3, [0, 60, 7_200], 9_000, N_MOVIES, 8)
    with torch.no_grad():
        torch_logits = model.score_histories(
            encoded, torch.tensor([[0.0, 1.0, 0.0]]), torch.arange(N_MOVIES)[None]
        )[0].numpy()
    np.testing.assert_allclose(loaded.logits(vector, np.arange(N_MOVIES)), torch_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        loaded.score(vector, np.arange(3)), 1 / (1 + np.exp(-torch_logits[:3])), atol=1e-6
    )
    assert loaded.user_vector([10**9], None, [0], None, 1) is None  # no known movie: no vector


def test_cold_movies_are_scored_from_features_alone(toy: Toy) -> None:
    loaded = _artifact(toy)
    vector = loaded.user_vector([3, 4, 5], [1, 1, 1], [0, 60, 7_200], None, 9_000)
    assert vector is not None
    raw = np.tile(np.asarray(loaded.metadata.cold_movie_features, np.float32), (2, 1))
    logits = loaded.cold_movie_logits(vector, raw)
    assert logits.shape == (2,)
    assert np.isfinite(logits).all()


def _zip(metadata: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps(metadata))
    return buffer.getvalue()


def test_an_old_format_artifact_is_refused_with_a_clear_error(toy: Toy) -> None:
    with pytest.raises(ValueError, match="format_version 1 is the ID-based NeuMF"):
        sequence.load(_zip({"format_version": artifact.FORMAT_VERSION}))
    with pytest.raises(ValueError, match="unsupported artifact format_version 3"):
        sequence.load(_zip({"format_version": 3, "model": sequence.MODEL_NAME}))
    # And the ID-based loader refuses the new format, naming the loader to use.
    with pytest.raises(ValueError, match=r"sequence model: load it with movierec.sequence.load"):
        artifact.load(sequence.save(_artifact(toy)))


def test_the_artifact_does_not_grow_with_users() -> None:
    """10k and 1M users: the same model and movies give artifacts within 1% (no per-user part)."""
    torch.manual_seed(0)
    movies = Movies(
        np.arange(1, N_MOVIES + 1), [""] * N_MOVIES, [()] * N_MOVIES, np.zeros(N_MOVIES, np.int16)
    )
    none = np.zeros(0, np.int32)
    pairs = positives_from_columns(none, none, np.zeros(0, np.float32), np.zeros(0, np.int64),
                                   np.zeros(0, np.float32), 1, N_MOVIES)  # fmt: skip
    features = compute_features(pairs, Users(["0"], [""]), movies, 1)
    sizes = []
    for n_users in (10_000, 1_000_000):
        regions = [f"r{u % 5}" for u in range(n_users)]
        users = Users([str(u) for u in range(n_users)], regions)
        names = profile_names(users)
        assert dataset_profiles(Users(users.ids[:3], regions[:3]), names).shape == (3, 5)
        model = SequenceNeuMF(N_MOVIES, torch.from_numpy(features.movies.normalised), len(names), PARAMS)
        built = build_sequence_artifact(model, features, names, 1, list(range(1, N_MOVIES + 1)), PARAMS, "t")
        assert all(n_users not in array.shape for array in built.weights.values())
        sizes.append(len(sequence.save(built)))
    assert abs(sizes[0] - sizes[1]) / sizes[0] < 0.01


def test_every_weight_the_forward_reads_is_in_the_artifact(toy: Toy) -> None:
    loaded = _artifact(toy)
    for k in range(PARAMS.blocks):
        for part in SequenceWeights.BLOCK_PARTS:
            assert SequenceWeights.block(k, part) in loaded.weights
    assert loaded.weights[SequenceWeights.POSITION].shape == (PARAMS.history_length, PARAMS.dim)
