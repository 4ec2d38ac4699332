"""Rebuilding Redis's real-time state from MongoDB's events: real MongoDB-wire server and Redis.

The reference is the state ingest leaves after every event once; a Redis that lost everything (a cold
restart without persistence) or part of it must come back to exactly that.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.ops.rebuild import main
from movierec.ingest.processor import handle_stream_event
from movierec.stores import aws
from tests.integration.ingest_harness import APPLIED_TTL_SECONDS, RECENT_LENGTH, Harness
from tests.support import BASE_TIME, event_payload, kinesis_event

USERS = 12


def varied_events() -> list[bytes]:
    """Every type that changes state, and some that do not; engagements of some users before their
    sign-up (they wait, unattributed, for a region), profile changes, movies upserted then retired."""
    payloads: list[bytes] = []
    for n in range(8):
        payloads.append(
            event_payload("movie_upsert", n, movie_id=100 + n, title=f"Movie {n}", genres=["Drama"])
        )
    for n in range(240):
        user = f"u{n % USERS}"
        kind = ["rating", "watch", "click", "add_to_list", "search", "impression"][n % 6]
        fields: dict[str, Any] = {"user_id": user}
        if kind in ("rating", "watch", "click", "add_to_list"):
            fields["movie_id"] = 100 + n % 8 if n % 5 else 1 + n % 17
        payloads.append(event_payload(kind, 1_000 + n, **fields))
        if n == 60:  # half the users sign up only now: their earlier engagements waited for a region
            payloads += [
                event_payload("signup", 2_000 + u, user_id=f"u{u}", region=["EU", "US", "APAC"][u % 3])
                for u in range(USERS)
            ]
        if n == 150:
            payloads += [
                event_payload("profile", 3_000 + u, user_id=f"u{u}", locale="fr-FR") for u in range(4)
            ]
            payloads.append(event_payload("movie_retire", 3_100, movie_id=103))
    return payloads


def ingest_all(harness: Harness, payloads: list[bytes], batch: int = 40) -> None:
    for start in range(0, len(payloads), batch):
        event = kinesis_event(payloads[start : start + batch], first_sequence=start)
        assert handle_stream_event(event, None, harness.service.ingest) == {"batchItemFailures": []}


def test_a_redis_that_lost_everything_is_rebuilt_exactly(harness: Harness) -> None:
    ingest_all(harness, varied_events())
    expected = harness.state()
    assert any(key.startswith("mr:trend:") for key in expected["cache"])  # trending is part of it

    harness.redis.flushall()  # a cold restart of a Redis without persistence
    assert harness.state() != expected

    summary = harness.rebuild_realtime(page_size=33)
    assert summary.unreadable == 0
    assert summary.events == len(varied_events()) - 80  # searches and impressions change no state
    assert (summary.profiles, summary.movies) == (USERS + 4, 9)
    assert harness.state() == expected
    harness.rebuild_realtime()  # twice changes nothing: trending is guarded by the applied markers
    assert harness.state() == expected


def test_a_redis_that_lost_part_of_its_state_converges(harness: Harness) -> None:
    payloads = varied_events()
    ingest_all(harness, payloads)
    expected = harness.state()
    # Drop a third of the keys (as a failover to a replica that was behind might): markers and trending
    # counts no longer match, so a plain rebuild cannot tell what was counted; recounting can.
    doomed = sorted(bytes(k).decode() for k in harness.redis.scan_iter("*"))[::3]
    assert any(":applied" in k for k in doomed)
    assert any(k.startswith("mr:trend:") for k in doomed)
    harness.redis.delete(*doomed)
    assert harness.state() != expected
    summary = harness.rebuild_realtime(recount_trending=True)
    assert summary.counting_keys_dropped > 0
    assert harness.state() == expected
    harness.rebuild_realtime()
    assert harness.state() == expected


def test_unreadable_documents_are_counted_and_since_bounds_the_read(harness: Harness) -> None:
    payloads = varied_events()
    ingest_all(harness, payloads)
    expected = harness.state()
    harness.mongo["events"].insert_one({"_id": "legacy-1", "type": "rating", "occurred_at": BASE_TIME})
    harness.redis.flushall()

    later = harness.rebuild_realtime(since=BASE_TIME.replace(year=2027))
    assert (later.events, later.unreadable) == (0, 0)
    assert harness.state()["cache"] == {}

    summary = harness.rebuild_realtime()
    assert summary.unreadable == 1  # the legacy document is skipped, never fatal
    assert harness.state()["cache"] == expected["cache"]


def test_the_command_rebuilds_with_the_ingest_settings(
    harness: Harness,
    mongo_uri: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_all(harness, varied_events())
    # The command's clock is the wall clock, so trending buckets of these 2026 test events are too old to
    # keep; everything else must come back as ingest left it.
    untimed = {k: v for k, v in harness.state()["cache"].items() if not k.startswith("mr:trend:")}
    harness.redis.flushall()
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", harness.mongo.name)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", harness.queue_url)
    monkeypatch.setenv("DEAD_LETTER_BUCKET", "movierec-test-artifacts")
    monkeypatch.setenv("RECENT_LIST_LENGTH", str(RECENT_LENGTH))
    monkeypatch.setenv("APPLIED_MARKER_TTL_SECONDS", str(APPLIED_TTL_SECONDS))
    aws.client.cache_clear()
    capsys.readouterr()  # the ingest function's metric lines so far
    try:
        assert main(["--page-size", "50"]) == 0
    finally:
        aws.client.cache_clear()
    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == len(varied_events()) - 80
    assert {k: v for k, v in harness.state()["cache"].items() if not k.startswith("mr:trend:")} == untimed

    for refused in (
        ["--since", "2026-11-01T00:00:00"],
        ["--since", "2026-11-01T00:00:00Z", "--recount-trending"],
    ):
        with pytest.raises(SystemExit):
            main(refused)  # no timezone; a recount of part of the history: refused, nothing is read
