"""An ingest service over real servers, plus readers of the state it leaves behind."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import pymongo
import pymongo.monitoring
import redis
from redis.cluster import RedisCluster

from infra.ops.rebuild import RebuildSummary, rebuild_realtime
from movierec.history import HISTORY_LENGTH
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import IngestService, StoreRetry
from movierec.stores.cache import RedisClient
from movierec.stores.deadletter import DeadLetterQueue
from movierec.stores.documents import EventDocuments
from movierec.stores.realtime import RealtimeState, TrendingPolicy
from tests.support import BASE_TIME, event_payload

TRENDING = TrendingPolicy(bucket_seconds=3600, buckets_kept=24 * 365 * 10)  # keep test-era buckets
MAX_CLOCK_SKEW_SECONDS = 300
NO_RETRY = StoreRetry(budget_seconds=0)  # a store failure fails the batch at once, as most tests want
NOW = BASE_TIME.timestamp() + 400 * 86_400  # after every test event; TRENDING keeps them all "recent"
RECENT_LENGTH = HISTORY_LENGTH  # what ingest keeps by default: what the model reads
APPLIED_TTL_SECONDS = 8 * 24 * 3600


@dataclass
class Harness:
    service: IngestService
    mongo: pymongo.database.Database[dict[str, Any]]
    redis: RedisClient
    queue_url: str

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = boto3.client("sqs")
        messages: list[dict[str, Any]] = []
        while True:
            response = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = response.get("Messages", [])
            if not batch:
                return messages
            messages += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def rebuild_realtime(self, **options: Any) -> RebuildSummary:
        """Redis's state re-derived from MongoDB's events, with the parts and clock ingest uses here."""
        return rebuild_realtime(
            EventDocuments(self.mongo), realtime_state(self.redis), TRENDING, clock=lambda: NOW, **options
        )

    def trending(self, segment: str) -> dict[bytes, float]:
        """Counts summed over every time bucket of a segment."""
        totals: dict[bytes, float] = {}
        for key in self.redis.scan_iter(f"mr:trend:{segment}:*"):
            rows: list[tuple[bytes, float]] = self.redis.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
            for member, score in rows:
                totals[member] = totals.get(member, 0.0) + score
        return totals

    def state(self) -> dict[str, Any]:
        """Everything ingest decides, minus bookkeeping that legitimately differs (apply times)."""
        users = {
            doc["_id"]: {k: v for k, v in doc.items() if k != "applied_event_ids"}
            for doc in self.mongo["users"].find({})
        }
        movies = {doc["_id"]: doc for doc in self.mongo["movies"].find({})}
        events = sorted(doc["_id"] for doc in self.mongo["events"].find({}, {"_id": 1}))
        cache: dict[str, Any] = {}
        for key in self.redis.scan_iter("*"):
            name = bytes(key).decode()
            if name.endswith(":applied"):
                continue
            raw_kind = self.redis.type(key)
            kind = raw_kind.decode() if isinstance(raw_kind, bytes) else raw_kind
            if kind == "set":
                cache[name] = sorted(self.redis.smembers(key))
            elif kind == "zset":
                cache[name] = self.redis.zrange(key, 0, -1, withscores=True)
            elif kind == "list":  # pending attributions: a multiset, order carries no meaning
                cache[name] = sorted(self.redis.lrange(key, 0, -1))
            elif kind == "hash":
                cache[name] = dict(sorted(self.redis.hgetall(key).items()))
            else:
                cache[name] = self.redis.get(key)
        return {"users": users, "movies": movies, "events": events, "cache": cache}


def realtime_state(cache: RedisClient) -> RealtimeState:
    return RealtimeState(cache, recent_length=RECENT_LENGTH, applied_ttl_seconds=APPLIED_TTL_SECONDS)


def build_harness(
    mongo_uri: str,
    database: str,
    redis_url: str,
    *,
    aws_endpoint: str,
    mongo_listeners: list[pymongo.monitoring.CommandListener] | None = None,
    store_retry: StoreRetry = NO_RETRY,
    redis_cluster: bool = False,
) -> Harness:
    """``redis_cluster``: ``redis_url`` names a node of a Redis Cluster, spoken to as one."""
    del aws_endpoint  # the fixture has set AWS_ENDPOINT_URL for boto3
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="movierec-test-artifacts")
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName="movierec-test-dlq")["QueueUrl"]
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_uri,
        serverSelectionTimeoutMS=1500,
        tz_aware=True,
        retryWrites=False,
        event_listeners=mongo_listeners or [],
    )
    client_class = RedisCluster if redis_cluster else redis.Redis
    cache: RedisClient = client_class.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
    cache.flushall()  # a harness starts from empty stores
    service = IngestService(
        documents=EventDocuments(mongo[database]),
        realtime=realtime_state(cache),
        dead_letters=DeadLetterQueue(queue_url, "movierec-test-artifacts", sqs=sqs, s3=s3),
        trending=TRENDING,
        max_clock_skew_seconds=MAX_CLOCK_SKEW_SECONDS,
        store_retry=store_retry,
        clock=lambda: NOW,
    )
    return Harness(service, mongo[database], cache, queue_url)


LogLines = Callable[[], list[dict[str, Any]]]
"""The Powertools logger's JSON lines so far (the ``log_lines`` fixture)."""


def outcomes(lines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(correlation id, message) of each per-event line."""
    return [
        (line["correlation_id"], line["message"]) for line in lines if line["message"].startswith("event ")
    ]


def event_ids(payloads: list[bytes]) -> list[str]:
    return [json.loads(payload)["event_id"] for payload in payloads]


def mixed_batch() -> list[bytes]:
    return [
        event_payload("signup", 0, user_id="u1", region="EU", country="FR"),
        event_payload("signup", 1, user_id="u2", region="US"),
        event_payload("movie_upsert", 2, movie_id=10, title="Alien", genres=["Horror", "Sci-Fi"], year=1979),
        event_payload("movie_upsert", 3, movie_id=20, title="Heat", genres=["Crime"], year=1995),
        event_payload("rating", 4, user_id="u1", movie_id=10, rating=4.5),
        event_payload("watch", 5, user_id="u1", movie_id=20, seconds_watched=5000, completion=0.8),
        event_payload("click", 6, user_id="u2", movie_id=10),
        event_payload("add_to_list", 7, user_id="u2", movie_id=20),
        event_payload("search", 8, user_id="u1", query="ridley scott"),
        event_payload("impression", 9, user_id="u1", recommendation_id="r-1", movie_ids=[10, 20]),
    ]


def ingest(harness: Harness, event: dict[str, Any]) -> list[str]:
    """Runs one batch; returns the identifiers Lambda would be told to retry."""
    response = handle_stream_event(event, None, harness.service.ingest)
    return [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]
