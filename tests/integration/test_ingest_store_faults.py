"""Ingest with a store failing inside one batch: MongoDB dying mid-batch, a restart inside the backoff,
Redis down. Real servers; each failure is triggered by a counted command, never by a clock."""

from __future__ import annotations

from typing import Any

import pymongo.monitoring
import pytest

from infra.local.servers import MongoServer, RedisServer
from movierec.ingest.service import StoreRetry
from tests.integration.ingest_harness import (
    Harness,
    LogLines,
    build_harness,
    event_ids,
    ingest,
    mixed_batch,
    outcomes,
)
from tests.support import kinesis_event, sequence_of


class StopAfterFirstInsert(pymongo.monitoring.CommandListener):
    """Stops the server the moment the batch's raw events are stored: a crash in mid-batch."""

    def __init__(self, server: MongoServer) -> None:
        self.server = server
        self.armed = True

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        if self.armed and event.command_name == "insert":
            self.armed = False
            self.server.stop()

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        pass


def reference_state(harness: Harness, batch: dict[str, Any]) -> dict[str, Any]:
    """The state after applying ``batch`` exactly once to empty stores."""
    ingest(harness, batch)
    return harness.state()


def test_mongodb_dying_mid_batch_loses_nothing_and_applies_nothing_twice(
    disposable_mongo: MongoServer, mongo_uri: str, mongo_database_name: str, redis_url: str, aws_reset: str
) -> None:
    batch = kinesis_event(mixed_batch())
    expected = reference_state(
        build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset), batch
    )
    listener = StopAfterFirstInsert(disposable_mongo)
    harness = build_harness(
        disposable_mongo.uri, "faults", redis_url, aws_endpoint=aws_reset, mongo_listeners=[listener]
    )
    harness.redis.flushall()

    failed = ingest(harness, batch)

    assert not listener.armed, "the server was stopped during the batch"
    assert failed == [sequence_of(batch, i) for i in range(10)]
    disposable_mongo.start()
    assert harness.mongo["events"].count_documents({}) == 10, "raw events written before the crash survive"

    assert ingest(harness, batch) == []
    assert harness.state() == expected
    assert ingest(harness, batch) == []
    assert harness.state() == expected


@pytest.mark.parametrize("store", ["mongodb", "redis"])
def test_a_store_restarted_during_the_backoff_costs_the_batch_nothing(
    store: str,
    disposable_mongo: MongoServer,
    disposable_redis: RedisServer,
    mongo_uri: str,
    mongo_database_name: str,
    redis_url: str,
    aws_reset: str,
) -> None:
    batch = kinesis_event(mixed_batch())
    expected = reference_state(
        build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset), batch
    )
    server: MongoServer | RedisServer = disposable_mongo if store == "mongodb" else disposable_redis
    waits: list[float] = []

    def restart_while_waiting(seconds: float) -> None:  # the backoff's wait, where the restart lands
        waits.append(seconds)
        if len(waits) == 2:
            server.start()

    harness = build_harness(
        disposable_mongo.uri,
        "backoff",
        disposable_redis.url,
        aws_endpoint=aws_reset,
        store_retry=StoreRetry(budget_seconds=20, sleep=restart_while_waiting),
    )
    server.stop()

    assert ingest(harness, batch) == [], "the batch rode out the restart inside one invocation"
    assert waits == [0.25, 0.5]
    assert harness.state() == expected


def test_the_backoff_doubles_within_its_budget_and_then_fails_the_batch() -> None:
    assert list(StoreRetry(budget_seconds=4).delays()) == [0.25, 0.5, 1.0, 2.0]
    assert list(StoreRetry(budget_seconds=0).delays()) == []


def test_redis_down_fails_the_batch_and_redelivery_completes_it(
    disposable_redis: RedisServer,
    mongo_uri: str,
    mongo_database_name: str,
    redis_url: str,
    aws_reset: str,
    log_lines: LogLines,
) -> None:
    batch = kinesis_event(mixed_batch())
    expected = reference_state(
        build_harness(mongo_uri, "reference_" + mongo_database_name, redis_url, aws_endpoint=aws_reset), batch
    )
    harness = build_harness(mongo_uri, mongo_database_name, disposable_redis.url, aws_endpoint=aws_reset)
    disposable_redis.stop()

    failed = ingest(harness, batch)

    assert failed == [sequence_of(batch, i) for i in range(10)]
    assert harness.mongo["events"].count_documents({}) == 10, "MongoDB took the batch while Redis was down"
    retried = [line for line in outcomes(log_lines()) if line[1] == "event failed, will be retried"]
    assert retried == [(event_id, "event failed, will be retried") for event_id in event_ids(mixed_batch())]
    disposable_redis.start()
    assert ingest(harness, batch) == []
    assert harness.state() == expected
    harness.mongo.client.drop_database("reference_" + mongo_database_name)
