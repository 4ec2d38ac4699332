"""The online tier serving the sequence model (format 2) from real Redis and (moto's) S3: the user vector
is computed from the recent list ingest keeps, on every miss, so an engagement changes it at once."""

from __future__ import annotations

import time
from dataclasses import astuple

import boto3
import numpy as np
import pytest
import redis

from bench.sequence import untrained_artifact as sequence_artifact
from movierec import keys, sequence
from movierec.publication import Item, MovieInfo
from movierec.recommend.online import ScorerCache, SequenceScorer
from movierec.recommend.service import Recommender, Tier
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.blobs import BlobStore
from movierec.stores.serving import ServingStore
from tests.integration.test_online import POLICY, watch
from training_job.publishing import publish
from training_job.sequence_model import SequenceParams
from training_job.stores.publication import PublicationStore

MOVIES = 120
PARAMS = SequenceParams(dim=16, ffn_dim=16, mlp_layers=(16, 8), history_length=20, window_stride=20)


@pytest.fixture(scope="module")
def artifact_bytes() -> bytes:
    return sequence_artifact(MOVIES, 50, PARAMS)  # untrained weights: the mechanics do not need more


Published = tuple[Recommender, str, ScorerCache]


@pytest.fixture
def published(redis_client: redis.Redis, aws_reset: str, artifact_bytes: bytes) -> Published:
    boto3.client("s3").create_bucket(Bucket="artifacts")
    blobs = BlobStore("artifacts")
    model = sequence.load(artifact_bytes)
    uri = blobs.put("models/seq/model.npz", artifact_bytes)
    catalogue = {m: MovieInfo(f"Movie {m}", ("Drama",), 2000) for m in range(1, MOVIES + 1)}
    popular = [Item(m, 1.0 / m, *astuple(catalogue[m])) for m in range(1, 51)]
    version = publish(
        PublicationStore(redis_client), blobs, {keys.GLOBAL_SEGMENT: popular}, iter([]), catalogue,
        data_cutoff=time.time() - 60, grace_seconds=60, model_version=model.metadata.model_version,
        artifact_uri=uri,
    ).version  # fmt: skip
    scorers = ScorerCache(blobs)
    return (
        Recommender(ServingStore(redis_client), PopularitySnapshot(), POLICY, scorer=scorers),
        version,
        scorers,
    )


def scorer_of(scorers: ScorerCache, redis_client: redis.Redis) -> SequenceScorer:
    scorer = scorers(ServingStore(redis_client).publication().manifest)
    assert isinstance(scorer, SequenceScorer)  # the format-2 artifact got the sequence scorer
    return scorer


def test_an_engagement_changes_the_next_requests_user_vector_and_its_movie_leaves_the_list(
    published: Published, redis_client: redis.Redis
) -> None:
    recommender, version, scorers = published
    now = time.time()
    watch(redis_client, "viewer", [3, 5, 8], now - 600)

    first = recommender.recommend("viewer", k=10)

    assert first.tier is Tier.ONLINE
    assert first.model_version == version
    assert not {3, 5, 8} & {i.movie_id for i in first.items}
    store = ServingStore(redis_client)
    before = store.complete("viewer", store.read_user("viewer"))
    assert before.recent_times == [pytest.approx(now - 600)] * 3  # the times ingest keeps come along
    scorer = scorer_of(scorers, redis_client)
    vector_before = scorer.user_vector(before.recent, before.recent_times, before.profile)

    newest = first.items[0].movie_id
    watch(redis_client, "viewer", [newest], now)  # the user watches the top recommendation
    redis_client.delete(keys.online_recommendations(version, "viewer"))
    second = recommender.recommend("viewer", k=10)

    after = store.complete("viewer", store.read_user("viewer"))
    assert after.recent[0] == newest
    vector_after = scorer.user_vector(after.recent, after.recent_times, after.profile)
    assert vector_before is not None
    assert vector_after is not None
    assert not np.allclose(vector_before.gmf, vector_after.gmf)  # a fresh vector at once
    assert second.tier is Tier.ONLINE
    assert newest not in {i.movie_id for i in second.items}
    indexes = scorer.model.movie_indexes([i.movie_id for i in second.items])
    expected = scorer.model.score(vector_after, indexes)
    assert [i.score for i in second.items] == pytest.approx([float(s) for s in expected], abs=1e-5)


def test_a_user_with_no_history_falls_back_to_popularity(published: Published) -> None:
    recommender, _, _ = published
    result = recommender.recommend("stranger", k=5)
    assert result.tier is not Tier.ONLINE
    assert len(result.items) == 5


def test_similar_movies_come_from_the_sequence_models_movie_vectors(published: Published) -> None:
    recommender, _, _ = published
    similar = recommender.similar(7, k=4)
    assert similar is not None
    assert len(similar) == 4
    assert 7 not in {i.movie_id for i in similar}
    assert recommender.similar(10_000_000, k=4) is None
