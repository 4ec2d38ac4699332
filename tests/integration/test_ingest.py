"""Ingest against real Redis, the MongoDB-wire server and moto: effects, redelivery, poison, faults."""

from __future__ import annotations

import json

from movierec import keys
from tests.integration.ingest_harness import Harness, LogLines, event_ids, ingest, mixed_batch, outcomes
from tests.support import event_payload, kafka_event, kinesis_event


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
