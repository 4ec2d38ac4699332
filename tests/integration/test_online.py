"""The online tier against real Redis, with the artifact of a small training run in (moto's) S3."""

from __future__ import annotations

import time
from dataclasses import astuple
from datetime import UTC, datetime
from pathlib import Path

import boto3
import numpy as np
import pytest
import redis

from infra.local.servers import free_port
from movierec import keys
from movierec.artifact import load
from movierec.config import RecommendSettings
from movierec.contracts import Engagement
from movierec.data.dataset import Dataset
from movierec.feature_views import MOVIE_STATS_V1
from movierec.publication import Item, MovieInfo
from movierec.recommend.movie_features import FreshMovieFeatures
from movierec.recommend.online import ScorerCache
from movierec.recommend.service import Recommender, ServingPolicy, Tier
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.recommend.wiring import build_recommender
from movierec.stores.blobs import BlobStore
from movierec.stores.online_features import OnlineFeatureReader
from movierec.stores.realtime import RealtimeState, TrendingPolicy
from movierec.stores.serving import ServingStore
from tests.integration.test_online_movie_features import stats_row, write_row
from training_job.fit import FitConfig, FitResult, fit
from training_job.model import NeuMFParams
from training_job.publishing import publish
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.publication import PublicationStore

DATA = SyntheticConfig(n_users=150, n_movies=300, n_events=5_000, seed=31)
PARAMS = NeuMFParams(factors=8, mlp_layers=(16, 8, 4), batch_size=2048, learning_rate=0.01)
POLICY = ServingPolicy(deadline_ms=100, online_cache_ttl_seconds=60, trending_bucket_seconds=3600)
TRENDING = TrendingPolicy(3600, 24)


@pytest.fixture(scope="module")
def trained() -> tuple[Dataset, FitResult]:
    data = generate(DATA)
    cutoff = datetime.fromtimestamp(int(np.quantile(data.interactions.timestamp, 0.95)), UTC)
    config = FitConfig(
        budget_seconds=1.0, params=PARAMS, max_epochs=3, max_trials=1, progress=False, threads=1
    )
    return data, fit(data, config, cutoff=cutoff)


def catalogue(data: Dataset) -> dict[int, MovieInfo]:
    movies = data.movies
    return {
        int(m): MovieInfo(movies.titles[i], movies.genres[i], int(movies.year[i]) or None)
        for i, m in enumerate(movies.ids)
    }


def publish_model(
    client: redis.Redis, blobs: BlobStore, data: Dataset, result: FitResult, personal: dict[str, list[Item]]
) -> str:
    uri = blobs.put(f"models/{result.model_version}/model.npz", result.artifact_bytes)
    popular = catalogue(data)
    global_list = [Item(m, 1.0 / (m + 1), *astuple(popular[m])) for m in sorted(popular)[:50]]
    return publish(
        PublicationStore(client),
        blobs,
        {keys.GLOBAL_SEGMENT: global_list},
        iter(personal.items()),
        popular,
        data_cutoff=time.time() - 60,
        grace_seconds=60,
        model_version=result.model_version,
        artifact_uri=uri,
    ).version


def watch(client: redis.Redis, user_id: str, movie_ids: list[int], at: float) -> None:
    engagements = [Engagement(f"{user_id}-{m}-{at}", user_id, m, at, "watch") for m in movie_ids]
    RealtimeState(client, recent_length=20, applied_ttl_seconds=3600).apply(engagements, [], [], TRENDING, at)


@pytest.fixture
def blobs(aws_reset: str) -> BlobStore:
    boto3.client("s3").create_bucket(Bucket="artifacts")
    return BlobStore("artifacts")


def online_recommender(client: redis.Redis, blobs: BlobStore) -> Recommender:
    """The recommender as the function wires it: the published version's artifact, loaded from S3."""
    return Recommender(ServingStore(client), PopularitySnapshot(), POLICY, scorer=ScorerCache(blobs))


@pytest.fixture
def service(
    redis_client: redis.Redis, blobs: BlobStore, trained: tuple[Dataset, FitResult]
) -> tuple[Recommender, str]:
    data, result = trained
    version = publish_model(redis_client, blobs, data, result, personal={})
    return online_recommender(redis_client, blobs), version


def known_user(trained: tuple[Dataset, FitResult]) -> str:
    return load(trained[1].artifact_bytes).metadata.user_ids[0]


def test_a_user_the_model_knows_is_scored_online_and_the_list_is_cached(
    service: tuple[Recommender, str], redis_client: redis.Redis, trained: tuple[Dataset, FitResult]
) -> None:
    recommender, version = service
    user = known_user(trained)

    first = recommender.recommend(user, k=5)

    assert first.tier is Tier.ONLINE
    assert len(first.items) == 5
    assert first.model_version == version
    assert [f.reason for f in first.fallbacks] == ["miss"]
    ttl = redis_client.ttl(keys.online_recommendations(version, user))
    assert 0 < ttl <= POLICY.online_cache_ttl_seconds
    again = recommender.recommend(user, k=5)
    assert again.tier is Tier.ONLINE
    assert [i.movie_id for i in again.items] == [i.movie_id for i in first.items]


def test_an_unknown_user_is_folded_in_from_what_they_just_watched(
    service: tuple[Recommender, str], redis_client: redis.Redis
) -> None:
    recommender, _ = service
    watched = [1, 2, 3, 4]
    watch(redis_client, "newcomer", watched, time.time())

    result = recommender.recommend("newcomer", k=10)

    assert result.tier is Tier.ONLINE
    assert len(result.items) == 10
    assert not {i.movie_id for i in result.items} & set(watched)


def test_an_unknown_user_with_no_activity_falls_back_to_popularity(service: tuple[Recommender, str]) -> None:
    recommender, _ = service

    result = recommender.recommend("stranger", k=3)

    assert result.tier is Tier.GLOBAL_POPULAR
    assert ("online", "unknown user") in [(f.tier.value, f.reason) for f in result.fallbacks]


def test_a_movie_watched_after_scoring_leaves_the_cached_list_at_once(
    service: tuple[Recommender, str], redis_client: redis.Redis, trained: tuple[Dataset, FitResult]
) -> None:
    recommender, _ = service
    user = known_user(trained)
    top = recommender.recommend(user, k=3).items[0].movie_id

    watch(redis_client, user, [top], time.time())
    after = recommender.recommend(user, k=3)

    assert after.tier is Tier.ONLINE
    assert top not in [i.movie_id for i in after.items]


def test_online_lists_honour_the_genre_filter(
    service: tuple[Recommender, str], trained: tuple[Dataset, FitResult]
) -> None:
    recommender, _ = service
    genre = trained[0].movies.genres[0][0]

    result = recommender.recommend(known_user(trained), k=3, genre=genre)

    assert result.items
    assert all(genre in item.genres for item in result.items)


def test_a_stale_precomputed_list_is_rescored_online(
    redis_client: redis.Redis, blobs: BlobStore, trained: tuple[Dataset, FitResult]
) -> None:
    data, result = trained
    user = known_user(trained)
    info = catalogue(data)[7]
    publish_model(redis_client, blobs, data, result, {user: [Item(7, 0.9, *astuple(info))]})
    recommender = online_recommender(redis_client, blobs)
    assert recommender.recommend(user, k=1).tier is Tier.PERSONALIZED

    watch(redis_client, user, [11], time.time())  # newer than the publication's data cut-off
    later = recommender.recommend(user, k=1)

    assert later.tier is Tier.ONLINE
    assert ("personalized", "stale") in [(f.tier.value, f.reason) for f in later.fallbacks]


def test_a_missing_artifact_means_no_model_and_popularity_answers(
    redis_client: redis.Redis, blobs: BlobStore, trained: tuple[Dataset, FitResult]
) -> None:
    data, result = trained
    publish_model(redis_client, blobs, data, result, {})
    boto3.client("s3").delete_object(Bucket="artifacts", Key=f"models/{result.model_version}/model.npz")
    recommender = online_recommender(redis_client, blobs)

    answer = recommender.recommend(known_user(trained), k=3)

    assert answer.tier is Tier.GLOBAL_POPULAR
    assert ("online", "no model") in [(f.tier.value, f.reason) for f in answer.fallbacks]


def test_similar_movies_come_from_the_embeddings(service: tuple[Recommender, str]) -> None:
    recommender, _ = service

    similar = recommender.similar(5, k=4)

    assert similar is not None
    assert len(similar) == 4
    assert 5 not in [i.movie_id for i in similar]
    assert all(i.title for i in similar)
    assert recommender.similar(10_000_000, k=4) is None


def built_at_init(redis_url: str, tmp_path: Path) -> Recommender:
    """The recommender as the function's init builds it (movierec.recommend.wiring), from its settings."""
    settings = RecommendSettings(redis_url=redis_url, artifact_bucket="artifacts")
    return build_recommender(settings, package_dir=tmp_path)


def test_the_published_model_is_loaded_at_init_not_by_the_first_request(
    redis_client: redis.Redis,
    redis_url: str,
    blobs: BlobStore,
    trained: tuple[Dataset, FitResult],
    tmp_path: Path,
) -> None:
    data, result = trained
    publish_model(redis_client, blobs, data, result, {})
    recommender = built_at_init(redis_url, tmp_path)
    # Gone from S3 after init: only what init loaded can score the first request.
    boto3.client("s3").delete_object(Bucket="artifacts", Key=f"models/{result.model_version}/model.npz")

    first = recommender.recommend(known_user(trained), k=3)

    assert first.tier is Tier.ONLINE
    assert first.model_version is not None


def test_an_unreachable_s3_at_init_degrades_to_popularity(
    redis_client: redis.Redis,
    redis_url: str,
    blobs: BlobStore,
    trained: tuple[Dataset, FitResult],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data, result = trained
    publish_model(redis_client, blobs, data, result, {})
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there

    answer = built_at_init(redis_url, tmp_path).recommend(known_user(trained), k=3)

    assert answer.tier is Tier.GLOBAL_POPULAR
    assert ("online", "no model") in [(f.tier.value, f.reason) for f in answer.fallbacks]


def test_the_online_tier_the_function_builds_reranks_with_the_online_stores_movie_features(
    redis_client: redis.Redis,
    redis_url: str,
    blobs: BlobStore,
    trained: tuple[Dataset, FitResult],
    tmp_path: Path,
) -> None:
    data, result = trained
    version = publish_model(redis_client, blobs, data, result, {})
    model = load(result.artifact_bytes)
    watched = [int(m) for m in model.movie_ids[:4]]
    watch(redis_client, "newcomer", watched, time.time())
    before = built_at_init(redis_url, tmp_path).recommend("newcomer", k=10)

    # The feature pipeline materializes newer rows: every movie's popularity has moved since training.
    for i, movie_id in enumerate(model.movie_ids):
        write_row(redis_client, MOVIE_STATS_V1, int(movie_id), stats_row(float(i % 7)))
    redis_client.delete(keys.online_recommendations(version, "newcomer"))
    after = built_at_init(redis_url, tmp_path).recommend("newcomer", k=10)

    assert before.tier is after.tier is Tier.ONLINE
    user = model.fold_in(watched)
    assert user is not None
    indexes = model.movie_indexes([item.movie_id for item in after.items])
    fresh = FreshMovieFeatures(OnlineFeatureReader(redis_client)).normalised(model, indexes)
    expected = model.score(user, indexes, fresh)
    assert [item.score for item in after.items] == pytest.approx([float(s) for s in expected], abs=1e-5)
    assert [(i.movie_id, i.score) for i in before.items] != [(i.movie_id, i.score) for i in after.items]
