"""The online tier re-ranks with the candidates' fresh features from Feast's Redis layout (real Redis).

Rows are written the way Feast's Redis online store writes them (``stores/online_features.py``'s
layout, which ``test_feature_store.py`` holds to ``get_online_features``)."""

from __future__ import annotations

import bisect
import struct
from datetime import UTC, datetime

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster
from redis.crc import key_slot

from infra.local.servers import RedisServer
from movierec.artifact import ModelArtifact, Weights, load
from movierec.config import RedisSettings
from movierec.feature_views import MOVIE, MOVIE_METADATA_V1, MOVIE_STATS_V1, ViewSpec
from movierec.recommend.movie_features import FreshMovieFeatures
from movierec.recommend.online import ArtifactScorer
from movierec.stores.cache import RedisClient, connect_redis
from movierec.stores.online_features import OnlineFeatureReader, entity_key, feature_field
from training_job.fit import FitConfig, fit
from training_job.model import NeuMFParams
from training_job.sources.synthetic import SyntheticConfig, generate

DATA = SyntheticConfig(n_users=120, n_movies=250, n_events=4_000, seed=17)
PARAMS = NeuMFParams(factors=8, mlp_layers=(16, 8, 4), batch_size=2048, learning_rate=0.01)
_TS = b"\x08\x80\x8b\xd2\xbb\x06"  # google.protobuf.Timestamp{seconds=1735689600}


@pytest.fixture(scope="module")
def model() -> ModelArtifact:
    data = generate(DATA)
    cutoff = datetime.fromtimestamp(int(np.quantile(data.interactions.timestamp, 0.95)), UTC)
    config = FitConfig(
        budget_seconds=1.0, params=PARAMS, max_epochs=2, max_trials=1, progress=False, threads=1
    )
    return load(fit(data, config, cutoff=cutoff).artifact_bytes)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def write_row(client: RedisClient, view: ViewSpec, movie_id: int, values: dict[str, bytes]) -> None:
    """One movie's row of ``view`` as Feast writes it: protobuf values, the row's event time."""
    fields = [feature_field(view.name, name) for name in values] + [f"_ts:{view.name}".encode()]
    client.hset(entity_key(MOVIE, movie_id), mapping=dict(zip(fields, [*values.values(), _TS], strict=True)))


def float_value(x: float) -> bytes:
    return b"\x35" + struct.pack("<f", x)  # feast.types.Value{float_val=x}


def stats_row(popularity: float) -> dict[str, bytes]:
    names = ("popularity_7d", "popularity_30d", "popularity_all", "mean_rating")
    return {name: float_value(popularity if name != "mean_rating" else 4.5) for name in names}


def column(model: ModelArtifact, name: str) -> int:
    return model.metadata.movie_features.names.index(name)


def test_a_movie_with_an_online_row_is_scored_from_it_and_the_rest_keep_training_values(
    redis_client: redis.Redis, model: ModelArtifact
) -> None:
    assert model.item_features is not None
    candidates = model.retrieve(0, 50)
    trending = int(model.movie_ids[candidates[-1]])
    write_row(redis_client, MOVIE_STATS_V1, trending, stats_row(6.0))
    features = FreshMovieFeatures(OnlineFeatureReader(redis_client), clock=Clock())

    fresh = features.normalised(model, candidates)

    assert fresh is not None
    norm = model.metadata.movie_features
    j = column(model, "popularity_7d")
    assert fresh[-1, j] == pytest.approx((6.0 - norm.mean[j]) / norm.std[j], rel=1e-5)
    assert fresh[-1, column(model, "mean_rating")] == pytest.approx(
        (4.5 - norm.mean[column(model, "mean_rating")]) / norm.std[column(model, "mean_rating")], rel=1e-5
    )
    # Genre and year columns keep the training-time values.
    metadata_columns = [i for i, n in enumerate(norm.names) if n.startswith("genre:") or n == "year"]
    assert np.array_equal(fresh[-1, metadata_columns], model.item_features[candidates[-1], metadata_columns])
    assert np.array_equal(fresh[:-1], model.item_features[candidates[:-1]])  # no rows: unchanged

    scorer = ArtifactScorer(model, retrieval_candidates=50, movie_features=features)
    ranked = dict(scorer.rank(model.metadata.user_ids[0], [], frozenset(), 50))
    expected = model.score(0, candidates[-1:], fresh[-1:])[0]
    assert ranked[trending] == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(expected) - float(model.score(0, candidates[-1:])[0])) > 1e-4


def test_genres_and_year_keep_the_artifacts_values(redis_client: redis.Redis, model: ModelArtifact) -> None:
    """A known movie's catalogue metadata does not change after training: only its stats are read."""
    genres = [n.removeprefix("genre:") for n in model.metadata.movie_features.names if n.startswith("genre:")]
    genre = genres[0].encode()
    string_list = b"\x0a" + bytes([len(genre)]) + genre  # StringList{val=[genre]}
    value = b"\x62" + bytes([len(string_list)]) + string_list  # Value{string_list_val=...}
    movie = int(model.movie_ids[3])
    write_row(redis_client, MOVIE_METADATA_V1, movie, {"genres": value, "year": float_value(1985.0)})
    write_row(redis_client, MOVIE_STATS_V1, movie, stats_row(3.0))
    fresh = FreshMovieFeatures(OnlineFeatureReader(redis_client)).normalised(model, np.array([3]))
    assert fresh is not None
    assert model.item_features is not None
    norm = model.metadata.movie_features
    for name in norm.names:
        j = column(model, name)
        if name.startswith("genre:") or name in {"year", "year_unknown"}:
            assert fresh[0, j] == model.item_features[3, j], name
    j = column(model, "popularity_all")
    assert fresh[0, j] * norm.std[j] + norm.mean[j] == pytest.approx(3.0, abs=1e-4)


def test_rows_are_cached_for_the_configured_time(redis_client: redis.Redis, model: ModelArtifact) -> None:
    movie, j = int(model.movie_ids[5]), column(model, "popularity_all")
    mean, std = model.metadata.movie_features.mean[j], model.metadata.movie_features.std[j]
    write_row(redis_client, MOVIE_STATS_V1, movie, stats_row(2.0))
    clock = Clock()
    features = FreshMovieFeatures(OnlineFeatureReader(redis_client), cache_seconds=60, clock=clock)

    def popularity() -> float:
        fresh = features.normalised(model, np.array([5]))
        assert fresh is not None
        return float(fresh[0, j] * std + mean)

    assert popularity() == pytest.approx(2.0, abs=1e-4)
    write_row(redis_client, MOVIE_STATS_V1, movie, stats_row(4.0))  # the next materialization
    clock.now += 59
    assert popularity() == pytest.approx(2.0, abs=1e-4)
    clock.now += 2
    assert popularity() == pytest.approx(4.0, abs=1e-4)


def test_an_undecodable_value_keeps_the_training_time_features(
    redis_client: redis.Redis, model: ModelArtifact
) -> None:
    movie = int(model.movie_ids[7])
    write_row(redis_client, MOVIE_STATS_V1, movie, {"popularity_7d": b"\x35\x00"})  # a truncated float
    fresh = FreshMovieFeatures(OnlineFeatureReader(redis_client)).normalised(model, np.array([7, 8]))
    assert fresh is not None
    assert model.item_features is not None
    assert np.array_equal(fresh, model.item_features[[7, 8]])


def test_a_cache_that_is_down_keeps_the_training_time_features(
    disposable_redis: RedisServer, model: ModelArtifact
) -> None:
    client = connect_redis(RedisSettings(redis_url=disposable_redis.url))
    write_row(client, MOVIE_STATS_V1, int(model.movie_ids[2]), stats_row(5.0))
    disposable_redis.stop()
    features = FreshMovieFeatures(OnlineFeatureReader(client))
    assert model.item_features is not None
    for _ in range(2):  # the second call does not wait for Redis again (fail fast)
        fresh = features.normalised(model, np.array([2, 3]))
        assert fresh is not None
        assert np.array_equal(fresh, model.item_features[[2, 3]])
    scorer = ArtifactScorer(model, movie_features=features)
    assert scorer.rank(model.metadata.user_ids[1], [], frozenset(), 10)  # still answers


def test_an_artifact_without_item_features_takes_no_fresh_features(
    redis_client: redis.Redis, model: ModelArtifact
) -> None:
    weights = {k: v for k, v in model.weights.items() if k != Weights.ITEM_FEATURES}
    older = ModelArtifact(weights, model.metadata)
    write_row(redis_client, MOVIE_STATS_V1, int(older.movie_ids[0]), stats_row(5.0))
    assert FreshMovieFeatures(OnlineFeatureReader(redis_client)).normalised(older, np.array([0])) is None


def test_the_rows_are_read_the_same_from_a_redis_cluster(
    redis_client: redis.Redis,
    redis_cluster_client: RedisCluster,
    redis_cluster_url: str,
    model: ModelArtifact,
) -> None:
    """ElastiCache cluster mode: Feast's keys hash to different slots (masters); one pipelined read."""
    indexes = np.arange(0, 40, 3)
    cluster = connect_redis(RedisSettings(redis_url=redis_cluster_url, redis_cluster=True))
    for client in (redis_client, cluster):
        for k, index in enumerate(indexes):
            write_row(client, MOVIE_STATS_V1, int(model.movie_ids[index]), stats_row(1.0 + k))
    slots = [key_slot(entity_key(MOVIE, int(model.movie_ids[i]))) for i in indexes]
    assert len(set(slots)) == len(indexes)
    # redis-cli --cluster create splits the 16,384 slots evenly: the rows live on every master.
    assert {bisect.bisect_right([5_461, 10_923], slot) for slot in slots} == {0, 1, 2}
    single = FreshMovieFeatures(OnlineFeatureReader(redis_client)).normalised(model, indexes)
    clustered = FreshMovieFeatures(OnlineFeatureReader(cluster)).normalised(model, indexes)
    assert single is not None
    assert clustered is not None
    assert np.array_equal(single, clustered)
    assert model.item_features is not None
    assert not np.array_equal(clustered, model.item_features[indexes])  # the rows were read
