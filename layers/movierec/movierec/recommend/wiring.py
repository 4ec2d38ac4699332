"""Builds the recommender from settings: the composition root, run once per container."""

from __future__ import annotations

from pathlib import Path

from movierec.config import RecommendSettings
from movierec.recommend.online import ScorerCache
from movierec.recommend.service import Recommender, ServingPolicy
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.serving import ServingStore


def build_recommender(settings: RecommendSettings) -> Recommender:
    snapshot_path = Path(settings.popularity_snapshot_path) if settings.popularity_snapshot_path else None
    store = ServingStore(
        connect_redis(settings), reconnect_with=lambda: connect_redis(settings, fresh_secret=True)
    )
    return Recommender(
        store=store,
        snapshot=PopularitySnapshot.load(snapshot_path),
        policy=ServingPolicy(
            deadline_ms=settings.deadline_ms,
            online_cache_ttl_seconds=settings.online_cache_ttl_seconds,
            trending_bucket_seconds=settings.trending_bucket_seconds,
        ),
        scorer=ScorerCache(store, BlobStore(settings.artifact_bucket)),
    )
