"""Builds the ingest service from settings: the composition root, run once per container."""

from __future__ import annotations

from movierec.config import IngestSettings
from movierec.ingest.service import IngestService, StoreRetry
from movierec.stores.cache import connect_redis
from movierec.stores.deadletter import DeadLetterQueue
from movierec.stores.documents import EventDocuments
from movierec.stores.mongo import connect_mongo
from movierec.stores.realtime import RealtimeState, TrendingPolicy


def build_ingest_service(settings: IngestSettings) -> IngestService:
    return IngestService(
        documents=build_documents(settings),
        realtime=build_realtime_state(settings),
        dead_letters=DeadLetterQueue(settings.dead_letter_queue_url, settings.dead_letter_bucket),
        trending=trending_policy(settings),
        max_clock_skew_seconds=settings.max_clock_skew_seconds,
        store_retry=StoreRetry(settings.store_retry_seconds),
    )


def build_documents(settings: IngestSettings) -> EventDocuments:
    return EventDocuments(connect_mongo(settings))


def build_realtime_state(settings: IngestSettings) -> RealtimeState:
    return RealtimeState(
        connect_redis(settings),
        recent_length=settings.recent_list_length,
        applied_ttl_seconds=settings.applied_marker_ttl_seconds,
    )


def trending_policy(settings: IngestSettings) -> TrendingPolicy:
    return TrendingPolicy(settings.trending_bucket_seconds, settings.trending_buckets_kept)
