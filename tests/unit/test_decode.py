"""Routing a raw record: an event, or poison with the precise reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from movierec.contracts import PoisonRecord, StreamRecord
from movierec.events import MAX_RECORD_BYTES, Event, EventType, MovieUpsertEvent, RatingEvent
from movierec.ingest.decode import InputRules, decode
from movierec.ingest.effects import engagement, movie_change, profile_change, version_of
from movierec.ingest.processor import event_type_of
from tests.support import BASE_TIME, event_payload, kafka_event, kinesis_event

VALID_RATING = (
    Path(__file__).resolve().parents[2] / "events" / "samples" / "valid" / "rating.json"
).read_bytes()


# Every sample event is dated before this clock; the tolerance is the configured default.
RULES = InputRules(now=BASE_TIME.timestamp() + 86_400, max_future_seconds=300)


def record(payload: bytes) -> StreamRecord:
    return StreamRecord(record_id="1", source="kinesis", payload=payload)


def decode_payload(payload: bytes, rules: InputRules = RULES) -> Event | PoisonRecord:
    return decode(record(payload), rules)


def test_a_valid_record_becomes_its_event() -> None:
    assert isinstance(decode_payload(VALID_RATING), RatingEvent)


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
    poison = decode_payload(payload)

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
    rating = decode_payload(event_payload("rating", 1, user_id="a", movie_id=3))
    signup = decode_payload(event_payload("signup", 2, user_id="a", region=" West "))
    upsert = decode_payload(event_payload("movie_upsert", 3, movie_id=3, title="X"))
    search = decode_payload(event_payload("search", 4))
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
    early = decode_payload(event_payload("click", 1))
    late = decode_payload(event_payload("click", 2))
    assert not isinstance(early, PoisonRecord)
    assert not isinstance(late, PoisonRecord)
    assert version_of(early) < version_of(late)


# ---- decoding is total: any bytes are an event or poison with a reason, never an exception ----------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        # Each of these crashed the function before (unhashable type, int limit, RecursionError).
        (event_payload("rating", 1, type=["rating"]), "unknown_type"),
        (event_payload("rating", 1, type={"$gt": ""}), "unknown_type"),
        (
            event_payload("rating", 1, movie_id=7).replace(b'"movie_id": 7', b'"movie_id": ' + b"9" * 5000),
            "too_complex",
        ),
        (b"[" * 50_000, "too_complex"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "too_complex"),
        # Strict types: a string is never coerced into a number, nor a bool into an int.
        (event_payload("rating", 1, rating="4.5"), "invalid_schema"),
        (event_payload("rating", 1, movie_id="7"), "invalid_schema"),
        (event_payload("click", 1, position=True), "invalid_schema"),
        (event_payload("rating", 1, occurred_at=1_700_000_000), "invalid_schema"),
        (event_payload("watch", 1).replace(b'"completion": 0.9', b'"completion": NaN'), "invalid_schema"),
    ],
)
def test_payloads_that_once_crashed_or_were_coerced_are_poison(payload: bytes, reason: str) -> None:
    poison = decode_payload(payload)

    assert isinstance(poison, PoisonRecord), poison
    assert poison.reason == reason
    assert poison.detail


def test_a_poison_record_keeps_the_event_id_it_carried() -> None:
    payload = event_payload("rating", 1, rating="4.5")
    poison = decode_payload(payload)

    assert isinstance(poison, PoisonRecord)
    assert poison.event_id == json.loads(payload)["event_id"]


def test_digits_and_brackets_inside_strings_are_not_structure() -> None:
    title = "[" * 40 + "9" * 60
    assert isinstance(decode_payload(event_payload("movie_upsert", 1, title=title)), MovieUpsertEvent)


def test_an_event_from_beyond_the_clock_skew_tolerance_is_poison() -> None:
    now = BASE_TIME.timestamp()
    payload = event_payload("rating", 0)  # occurred_at == BASE_TIME
    assert isinstance(decode_payload(payload, InputRules(now=now - 299, max_future_seconds=300)), RatingEvent)

    poison = decode_payload(payload, InputRules(now=now - 301, max_future_seconds=300))
    assert isinstance(poison, PoisonRecord)
    assert poison.reason == "future_event"
    assert "301 s ahead" in poison.detail

    far = decode_payload(event_payload("rating", 0, occurred_at="9999-12-31T23:59:59+00:00"))
    assert isinstance(far, PoisonRecord)
    assert far.reason == "future_event"


def _assert_total(payload: bytes) -> None:
    decoded = decode_payload(payload)
    if isinstance(decoded, PoisonRecord):
        assert decoded.reason in POISON_REASONS
        assert decoded.detail
        assert decoded.payload == payload
    else:
        assert isinstance(decoded, RatingEvent | MovieUpsertEvent) or decoded.type in KNOWN_TYPES


POISON_REASONS = {"oversize", "too_complex", "undecodable", "invalid_schema", "unknown_type", "future_event"}
KNOWN_TYPES = {t.value for t in EventType}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)
field_names = st.sampled_from(
    ["event_id", "type", "occurred_at", "user_id", "movie_id", "rating", "movie_ids", "title", "region", "x"]
)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.binary(max_size=512))
def test_any_bytes_decode_to_an_event_or_poison(payload: bytes) -> None:
    _assert_total(payload)


@settings(max_examples=400, deadline=None, derandomize=True)
@given(json_values)
def test_any_json_decodes_to_an_event_or_poison(value: object) -> None:
    _assert_total(json.dumps(value).encode())


@settings(max_examples=400, deadline=None, derandomize=True)
@given(
    st.sampled_from(sorted(KNOWN_TYPES)),
    st.dictionaries(field_names, json_values, max_size=3),
    st.integers(min_value=0, max_value=10_000),
)
def test_valid_events_with_arbitrary_fields_replaced_decode_totally(
    kind: str, replacements: dict[str, object], n: int
) -> None:
    document = json.loads(event_payload(kind, n)) | replacements
    _assert_total(json.dumps(document).encode())
