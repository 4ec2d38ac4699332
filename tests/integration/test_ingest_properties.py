"""Property: any delivery order, any duplication, any batching gives the state of one in-order pass."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pymongo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec.ingest.processor import handle_stream_event
from tests.integration.ingest_harness import Harness, build_harness
from tests.support import event_payload, kinesis_event

USERS = ["u1", "u2", "u3"]
MOVIES = [1, 2, 3, 4]
# One region per user: regional trending attributes an engagement to the region known when it is
# applied, so a user *moving* region mid-stream is order-dependent by design (docs/ingest.md).
REGION_OF = {"u1": "EU", "u2": "US", "u3": "APAC"}


@st.composite
def event_histories(draw: st.DrawFn) -> list[bytes]:
    """A history of distinct events over a few users and movies, each with its own time."""
    size = draw(st.integers(min_value=1, max_value=18))
    events: list[bytes] = []
    for n in range(size):
        kind = draw(
            st.sampled_from(["rating", "watch", "click", "signup", "profile", "movie_upsert", "movie_retire"])
        )
        user, movie = draw(st.sampled_from(USERS)), draw(st.sampled_from(MOVIES))
        fields: dict[str, Any]
        if kind == "signup":
            fields = {"user_id": user, "region": REGION_OF[user]}
        elif kind == "profile":
            fields = {"user_id": user, "locale": draw(st.sampled_from(["en-GB", "fr-FR", "ja-JP"]))}
        elif kind == "movie_upsert":
            fields = {"movie_id": movie, "title": f"Movie {movie}.{n}", "genres": ["Drama"]}
        elif kind == "movie_retire":
            fields = {"movie_id": movie}
        elif kind == "rating":
            fields = {"user_id": user, "movie_id": movie, "rating": draw(st.sampled_from([1.0, 3.5, 5.0]))}
        else:
            fields = {"user_id": user, "movie_id": movie}
        # Distinct minutes, drawn out of order, so arrival order and occurrence order differ.
        events.append(event_payload(kind, draw(st.integers(0, 10_000)) * 20 + n, **fields))
    return events


@st.composite
def deliveries(draw: st.DrawFn, history: list[bytes]) -> list[list[bytes]]:
    """The history shuffled, with redelivered duplicates, cut into batches."""
    delivered = history + draw(st.lists(st.sampled_from(history), max_size=len(history)))
    delivered = draw(st.permutations(delivered))
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(delivered) - 1)), max_size=4, unique=True)))
    bounds = [0, *cuts, len(delivered)]
    return [delivered[a:b] for a, b in itertools.pairwise(bounds) if delivered[a:b]]


def apply(harness: Harness, batches: list[list[bytes]]) -> dict[str, Any]:
    for sequence, batch in enumerate(batches):
        response = handle_stream_event(
            kinesis_event(batch, first_sequence=sequence * 1000), None, harness.service.ingest
        )
        assert response["batchItemFailures"] == []
    return harness.state()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), history=event_histories())
def test_delivery_order_duplicates_and_batching_do_not_change_the_outcome(
    data: st.DataObject, history: list[bytes], mongo_uri: str, redis_url: str, aws_reset: str
) -> None:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri)
    names = [f"prop_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    try:
        in_order = sorted(history, key=lambda raw: raw.split(b'"occurred_at": ')[1])
        expected = apply(build_harness(mongo_uri, names[0], redis_url, aws_endpoint=aws_reset), [in_order])
        shuffled = data.draw(deliveries(history))
        actual = apply(build_harness(mongo_uri, names[1], redis_url, aws_endpoint=aws_reset), shuffled)
        assert actual == expected
    finally:
        for name in names:
            client.drop_database(name)
        client.close()
