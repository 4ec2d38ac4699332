"""Routing a raw record: an event, or poison with the precise reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from movierec.events import MAX_RECORD_BYTES, RatingEvent
from movierec.ingest.decode import StreamRecord, decode
from movierec.ingest.effects import engagement, movie_change, profile_change, version_of
from movierec.ingest.processor import event_type_of
from movierec.stores.deadletter import PoisonRecord
from tests.support import event_payload, kafka_event, kinesis_event

VALID_RATING = (
    Path(__file__).resolve().parents[2] / "events" / "samples" / "valid" / "rating.json"
).read_bytes()


def record(payload: bytes) -> StreamRecord:
    return StreamRecord(record_id="1", source="kinesis", payload=payload)


def test_a_valid_record_becomes_its_event() -> None:
    assert isinstance(decode(record(VALID_RATING)), RatingEvent)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe\x00", "undecodable"),
        (b"{not json", "undecodable"),
        (b"[1, 2]", "invalid_schema"),
        (json.dumps({"type": "teleport"}).encode(), "unknown_type"),
        (json.dumps({"event_id": "x"}).encode(), "unknown_type"),
        (event_payload("rating", 1, rating=0.0), "invalid_schema"),
        (b" " * (MAX_RECORD_BYTES + 1), "oversize"),
    ],
)
def test_poison_says_why(payload: bytes, reason: str) -> None:
    poison = decode(record(payload))

    assert isinstance(poison, PoisonRecord)
    assert poison.reason == reason
    assert poison.payload == payload
    assert poison.detail


def test_event_shapes_are_told_apart() -> None:
    assert event_type_of(kinesis_event([b"{}"])).value == "KinesisDataStreams"
    assert event_type_of(kafka_event([b"{}"])).value == "Kafka"
    with pytest.raises(ValueError, match="not a Kinesis"):
        event_type_of({"Records": [{"eventSource": "aws:sqs"}]})


def test_effects_route_each_type() -> None:
    rating = decode(record(event_payload("rating", 1, user_id="a", movie_id=3)))
    signup = decode(record(event_payload("signup", 2, user_id="a", region=" West ")))
    upsert = decode(record(event_payload("movie_upsert", 3, movie_id=3, title="X")))
    search = decode(record(event_payload("search", 4)))
    assert not isinstance(rating, PoisonRecord)
    assert not isinstance(signup, PoisonRecord)
    assert not isinstance(upsert, PoisonRecord)
    assert not isinstance(search, PoisonRecord)

    assert engagement(rating) is not None
    assert engagement(search) is None
    change = profile_change(signup)
    assert change is not None
    assert change.fields == {"region": "west"}
    assert movie_change(upsert) is not None
    assert movie_change(rating) is None


def test_versions_order_by_time_then_event_id() -> None:
    early = decode(record(event_payload("click", 1)))
    late = decode(record(event_payload("click", 2)))
    assert not isinstance(early, PoisonRecord)
    assert not isinstance(late, PoisonRecord)
    assert version_of(early) < version_of(late)
