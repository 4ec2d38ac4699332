"""Ingest against real Redis, the MongoDB-wire server and moto: effects, redelivery, poison, faults."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pymongo.monitoring
import pytest

from infra.local.servers import MongoServer, RedisServer
from movierec import keys
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import StoreRetry
from movierec.observability import logger
from tests.integration.ingest_harness import Harness, build_harness
from tests.support import event_payload, kafka_event, kinesis_event, sequence_of


@pytest.fixture
def harness(mongo_uri: str, mongo_database_name: str, redis_url: str, aws_reset: str) -> Harness:
    return build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)


LogLines = Callable[[], list[dict[str, Any]]]


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The Powertools logger's JSON lines so far, with DEBUG on (as in an invocation sampled for debug)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    underlying = logging.getLogger(logger.name)  # the standard logger Powertools writes through
    level = underlying.level
    underlying.addHandler(handler)
    underlying.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        underlying.removeHandler(handler)
        underlying.setLevel(level)


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


def test_a_mixed_batch_lands_in_mongodb_and_redis(harness: Harness) -> None:
    assert ingest(harness, kinesis_event(mixed_batch())) == []
    assert harness.mongo["events"].count_documents({}) == 10
    user = harness.mongo["users"].find_one({"_id": "u1"})
    assert user is not None
    assert user["profile"] == {"region": "eu", "country": "FR"}
    assert user["counts"] == {"signup": 1, "rating": 1, "watch": 1, "search": 1, "impression": 1}
    alien = harness.mongo["movies"].find_one({"_id": 10})
    assert alien is not None
    assert alien["title"] == "Alien"
    assert alien["retired"] is False

    r = harness.redis
    assert r.smembers(keys.seen("u1")) == {b"10", b"20"}
    assert r.zrevrange(keys.recent("u1"), 0, -1) == [b"20", b"10"]  # newest first
    assert r.hget(keys.profile("u1"), "region") == b"eu"
    assert json.loads(r.hget(keys.MOVIES, "10") or b"{}")["title"] == "Alien"
    assert harness.trending(keys.region_segment("eu")) == {b"10": 1.0, b"20": 1.0}
    assert harness.trending(keys.GLOBAL_SEGMENT) == {b"10": 2.0, b"20": 2.0}


def test_redelivering_a_batch_changes_nothing(harness: Harness) -> None:
    batch = kinesis_event(mixed_batch())
    ingest(harness, batch)
    before = harness.state()

    assert ingest(harness, batch) == []
    assert harness.state() == before


def test_the_same_event_twice_in_one_batch_counts_once(harness: Harness) -> None:
    rating = event_payload("rating", 1, user_id="u9", movie_id=5, rating=3.0)
    ingest(harness, kinesis_event([rating, rating]))

    user = harness.mongo["users"].find_one({"_id": "u9"})
    assert user is not None
    assert user["counts"] == {"rating": 1}
    assert harness.trending(keys.GLOBAL_SEGMENT) == {b"5": 1.0}


def test_poison_records_are_dead_lettered_and_the_batch_succeeds(harness: Harness) -> None:
    poison = {
        "undecodable": b"\xff\xfe not json",
        "invalid_schema": event_payload("rating", 1, rating=9.0),
        "unknown_type": json.dumps({"type": "teleport", "event_id": "x"}).encode(),
        "oversize": event_payload("search", 2, query="q") + b" " * 70_000,
    }
    good = event_payload("rating", 3, user_id="u5", movie_id=7)
    assert ingest(harness, kinesis_event([*poison.values(), good])) == []
    parked = {message["reason"]: message for message in harness.dead_letters()}
    assert set(parked) == set(poison)
    for reason, payload in poison.items():
        assert parked[reason]["payload_bytes"] == len(payload)
        assert parked[reason]["source"] == "kinesis"
    assert "rating" in parked["invalid_schema"]["detail"]
    assert harness.mongo["events"].count_documents({}) == 1
    # The client's event_id, where the payload had a readable one, goes with the record for replay.
    assert parked["invalid_schema"]["event_id"] == json.loads(poison["invalid_schema"])["event_id"]
    assert parked["unknown_type"]["event_id"] == "x"
    assert parked["undecodable"]["event_id"] is None
    assert parked["oversize"]["event_id"] is None


def test_payloads_that_crashed_the_function_are_dead_lettered_and_neighbours_applied_once(
    harness: Harness,
) -> None:
    crashing = [
        event_payload("rating", 1, type=["rating"]),
        event_payload("rating", 2, type={"$gt": ""}),
        event_payload("rating", 3, movie_id=7).replace(b": 7,", b": " + b"9" * 5000 + b","),
        b"[" * 50_000,
    ]
    good = [event_payload("rating", 10 + n, user_id="u5", movie_id=20 + n) for n in range(3)]
    batch = kinesis_event([good[0], *crashing[:2], good[1], *crashing[2:], good[2]])

    assert ingest(harness, batch) == []
    assert ingest(harness, batch) == []  # a redelivery applies nothing twice

    reasons = sorted(message["reason"] for message in harness.dead_letters())
    assert reasons == sorted(["unknown_type", "unknown_type", "too_complex", "too_complex"] * 2)
    assert sorted(harness.mongo["events"].distinct("_id")) == sorted(event_ids(good))
    user = harness.mongo["users"].find_one({"_id": "u5"})
    assert user is not None
    assert user["counts"] == {"rating": 3}
    assert harness.redis.smembers(keys.seen("u5")) == {b"20", b"21", b"22"}


def test_an_event_id_reused_by_a_different_body_in_one_batch_is_poison_and_the_first_body_stands(
    harness: Harness,
) -> None:
    first = event_payload("rating", 1, user_id="u7", movie_id=5, rating=3.0)
    reused = event_payload("rating", 1, user_id="u7", movie_id=6, rating=5.0)  # same event_id
    assert ingest(harness, kinesis_event([first, reused, first])) == []

    stored = harness.mongo["events"].find_one({"_id": event_ids([first])[0]})
    assert stored is not None
    assert (stored["movie_id"], stored["rating"]) == (5, 3.0)
    assert harness.redis.smembers(keys.seen("u7")) == {b"5"}
    user = harness.mongo["users"].find_one({"_id": "u7"})
    assert user is not None
    assert user["counts"] == {"rating": 1}
    [parked] = harness.dead_letters()  # the exact repeat is a duplicate, not poison
    assert parked["reason"] == "conflicting_event_id"
    assert parked["event_id"] == event_ids([first])[0]


def test_an_event_id_reused_in_a_later_batch_is_poison_and_has_no_effect_anywhere(
    harness: Harness,
) -> None:
    first = event_payload("rating", 1, user_id="u7", movie_id=5, rating=3.0)
    reused = event_payload("rating", 1, user_id="u8", movie_id=6, rating=5.0)  # same id, other user
    assert ingest(harness, kinesis_event([first])) == []
    before = harness.state()

    assert ingest(harness, kinesis_event([reused], first_sequence=2)) == []
    assert ingest(harness, kinesis_event([first], first_sequence=3)) == []  # a plain redelivery

    assert harness.state() == before
    assert harness.mongo["users"].find_one({"_id": "u8"}) is None
    assert harness.redis.smembers(keys.seen("u8")) == set()
    [parked] = harness.dead_letters()
    assert parked["reason"] == "conflicting_event_id"
    assert "already stored" in parked["detail"]


def test_the_stored_body_wins_even_when_a_reused_one_comes_first_in_the_batch(harness: Harness) -> None:
    """A redelivery behind a reused body in one batch is still the event: it is applied again (here to a
    Redis that missed it) and only the reused body is poison."""
    first = event_payload("rating", 1, user_id="u7", movie_id=5, rating=3.0)
    reused = event_payload("rating", 1, user_id="u8", movie_id=6, rating=5.0)  # same id, other user
    assert ingest(harness, kinesis_event([first])) == []
    before = harness.state()
    harness.redis.flushall()  # Redis lost the first delivery's effects

    assert ingest(harness, kinesis_event([reused, first, reused], first_sequence=2)) == []

    assert harness.state() == before  # the redelivery put Redis back; the reused body changed nothing
    assert harness.redis.smembers(keys.seen("u8")) == set()
    [parked] = harness.dead_letters()  # the reused body once (its repeat is a duplicate in the batch)
    assert parked["reason"] == "conflicting_event_id"
    assert "already stored" in parked["detail"]


def test_each_event_logs_its_outcome_with_its_event_id_as_correlation_id(
    harness: Harness, log_lines: LogLines
) -> None:
    batch = mixed_batch()
    ids = event_ids(batch)

    ingest(harness, kinesis_event(batch))
    first = outcomes(log_lines())
    ingest(harness, kinesis_event([*batch[:2], batch[0]]))
    again = outcomes(log_lines())[len(first) :]

    assert first == [(event_id, "event stored") for event_id in ids]
    assert again == [
        (ids[0], "event duplicate in batch"),
        (ids[0], "event duplicate"),
        (ids[1], "event duplicate"),
    ]


def test_a_poison_record_is_logged_under_the_event_id_it_carried(
    harness: Harness, log_lines: LogLines
) -> None:
    invalid = event_payload("rating", 1, rating=9.0)

    ingest(harness, kinesis_event([invalid, b"not json"]))

    warnings = [line for line in log_lines() if line["message"] == "poison record"]
    assert [(w.get("correlation_id"), w["reason"]) for w in warnings] == [
        (event_ids([invalid])[0], "invalid_schema"),
        (None, "undecodable"),
    ]
    assert all(w["level"] == "WARNING" for w in warnings)


def test_kafka_batches_are_ingested_too(harness: Harness) -> None:
    assert ingest(harness, kafka_event(mixed_batch()[:6])) == []
    assert harness.mongo["events"].count_documents({}) == 6
    assert harness.redis.smembers(keys.seen("u1")) == {b"10", b"20"}


def test_out_of_order_profile_updates_keep_the_newest_value(harness: Harness) -> None:
    newer = event_payload("profile", 5, user_id="u3", region="APAC")
    older = event_payload("signup", 1, user_id="u3", region="EU")
    ingest(harness, kinesis_event([newer]))
    ingest(harness, kinesis_event([older]))

    user = harness.mongo["users"].find_one({"_id": "u3"})
    assert user is not None
    assert user["profile"]["region"] == "apac"
    assert harness.redis.hget(keys.profile("u3"), "region") == b"apac"


def test_a_retired_movie_is_marked_in_both_stores(harness: Harness) -> None:
    ingest(harness, kinesis_event([event_payload("movie_upsert", 1, movie_id=42, title="Gone")]))
    ingest(harness, kinesis_event([event_payload("movie_retire", 2, movie_id=42)]))

    movie = harness.mongo["movies"].find_one({"_id": 42})
    assert movie is not None
    assert movie["retired"] is True
    assert movie["title"] == "Gone"
    assert harness.redis.sismember(keys.RETIRED_MOVIES, "42")


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


def test_a_partly_redelivered_batch_counts_only_the_new_events(harness: Harness) -> None:
    first = event_payload("rating", 1, user_id="u7", movie_id=1)
    second = event_payload("watch", 2, user_id="u7", movie_id=2)
    ingest(harness, kinesis_event([first]))

    assert ingest(harness, kinesis_event([first, second])) == []

    user = harness.mongo["users"].find_one({"_id": "u7"})
    assert user is not None
    assert user["counts"] == {"rating": 1, "watch": 1}
    assert harness.trending(keys.GLOBAL_SEGMENT) == {b"1": 1.0, b"2": 1.0}


def test_a_user_with_new_events_and_an_older_profile_change_gets_both_right(harness: Harness) -> None:
    # One statement per user carries counters and profile fields; a newer stored field rejects it,
    # and its parts are then applied one by one.
    ingest(harness, kinesis_event([event_payload("profile", 9, user_id="u8", region="APAC", locale="ja-JP")]))
    older = event_payload("signup", 1, user_id="u8", region="EU", country="FR", locale="fr-FR")
    rating = event_payload("rating", 2, user_id="u8", movie_id=3, rating=4.0)

    assert ingest(harness, kinesis_event([older, rating])) == []
    assert ingest(harness, kinesis_event([older, rating])) == []

    user = harness.mongo["users"].find_one({"_id": "u8"})
    assert user is not None
    assert user["profile"] == {"region": "apac", "locale": "ja-JP", "country": "FR"}
    assert user["counts"] == {"profile": 1, "signup": 1, "rating": 1}


def test_an_older_upsert_after_a_retire_keeps_the_movie_retired_and_takes_its_metadata(
    harness: Harness,
) -> None:
    ingest(harness, kinesis_event([event_payload("movie_retire", 5, movie_id=43)]))
    ingest(harness, kinesis_event([event_payload("movie_upsert", 1, movie_id=43, title="Late")]))

    movie = harness.mongo["movies"].find_one({"_id": 43})
    assert movie is not None
    assert movie["retired"] is True
    assert movie["title"] == "Late"
    assert harness.redis.sismember(keys.RETIRED_MOVIES, "43")


def test_a_redis_node_that_lost_its_scripts_still_applies_the_batch_once(harness: Harness) -> None:
    # Scripts run by SHA; a restarted or failed-over node answers NOSCRIPT and they are loaded then.
    assert ingest(harness, kinesis_event([event_payload("signup", 0, user_id="u9", region="EU")])) == []
    harness.redis.script_flush()
    watch = event_payload("watch", 1, user_id="u9", movie_id=7, seconds_watched=60, completion=0.5)

    assert ingest(harness, kinesis_event([watch])) == []
    assert ingest(harness, kinesis_event([watch])) == []

    assert harness.redis.smembers(keys.seen("u9")) == {b"7"}
    assert harness.trending(keys.GLOBAL_SEGMENT) == {b"7": 1.0}
    assert harness.trending(keys.region_segment("eu")) == {b"7": 1.0}
