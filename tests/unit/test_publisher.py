"""The publisher (dataset -> contract events) and the Kinesis adapter's batching and retries."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from movierec.data.dataset import UNKNOWN, Dataset, InteractionKind, Interactions, Movies, Users
from movierec.events import (
    AddToListEvent,
    ClickEvent,
    MovieUpsertEvent,
    RatingEvent,
    SignupEvent,
    WatchEvent,
    dump_event,
    parse_event,
)
from training_job.sources.movielens import load_movielens
from training_job.sources.publisher import (
    NOMINAL_RUNTIME_SECONDS,
    UNKNOWN_REGION,
    event_count,
    iter_events,
    partition_key,
    publish,
)
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.stream import (
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    MAX_RECORD_BYTES,
    KinesisStream,
    StreamPutError,
    batches,
)

T0 = 1_700_000_000


def tiny(name: str = "tiny") -> Dataset:
    users = Users(
        ids=["alice", "bob", "carol"],
        region=["us-west", UNKNOWN, "eu-west"],
        gender=["F", "M", "F"],
        age=np.array([30, 0, 5], dtype=np.int16),
        occupation=[],
    )
    movies = Movies(
        ids=np.array([10, 20], dtype=np.int64),
        titles=["Heat (1995)", "Untitled"],
        genres=[("Action", "Crime"), ()],
        year=np.array([1995, 0], dtype=np.int16),
    )
    interactions = Interactions(
        user=np.array([0, 1, 0, 1, 0, 1], dtype=np.int32),
        movie=np.array([0, 0, 1, 1, 0, 0], dtype=np.int32),
        value=np.array([4.5, 0.8, 1.0, 1.0, 3.0, 1.0], dtype=np.float32),
        timestamp=np.array([T0 + 50, T0 + 10, T0 + 30, T0 + 30, T0 + 60, T0 + 70], dtype=np.int64),
        kind=np.array(
            [
                InteractionKind.RATING,
                InteractionKind.WATCH,
                InteractionKind.CLICK,
                InteractionKind.ADD_TO_LIST,
                InteractionKind.RATING,
                InteractionKind.CLICK,
            ],
            dtype=np.int8,
        ),
    )
    return Dataset(name=name, users=users, movies=movies, interactions=interactions)


def at(offset: int) -> datetime:
    return datetime.fromtimestamp(T0 + offset, tz=UTC)


def test_events_come_in_publishing_order() -> None:
    events = list(iter_events(tiny()))
    assert len(events) == event_count(tiny()) == 3 + 2 + 6
    assert [type(e) for e in events[:5]] == [SignupEvent] * 3 + [MovieUpsertEvent] * 2
    interactions = events[5:]
    assert [e.occurred_at for e in interactions] == [at(10), at(30), at(30), at(50), at(60), at(70)]
    # The tie at +30 keeps dataset order: the click (row 2) before the add-to-list (row 3).
    assert [type(e) for e in interactions] == [
        WatchEvent,
        ClickEvent,
        AddToListEvent,
        RatingEvent,
        RatingEvent,
        ClickEvent,
    ]


def test_signups() -> None:
    alice, bob, carol = (e for e in iter_events(tiny()) if isinstance(e, SignupEvent))
    assert (alice.user_id, alice.region, alice.country) == ("alice", "us-west", "US")
    assert alice.occurred_at == at(30)  # the first interaction
    assert alice.birth_year == at(30).year - 30
    assert (bob.region, bob.country, bob.birth_year) == (UNKNOWN_REGION, None, None)
    assert bob.occurred_at == at(10)
    assert (carol.region, carol.country) == ("eu-west", None)
    assert carol.birth_year is None  # age 5 is a code, not an age
    assert carol.occurred_at == at(10)  # no interactions: when the catalogue begins


def test_movies() -> None:
    heat, untitled = (e for e in iter_events(tiny()) if isinstance(e, MovieUpsertEvent))
    assert (heat.movie_id, heat.title, heat.genres, heat.year) == (
        10,
        "Heat (1995)",
        ["Action", "Crime"],
        1995,
    )
    assert (untitled.movie_id, untitled.genres, untitled.year) == (20, [], None)


def test_interaction_values() -> None:
    events = list(iter_events(tiny()))[5:]
    watch = events[0]
    assert isinstance(watch, WatchEvent)
    assert (watch.user_id, watch.movie_id) == ("bob", 10)
    assert watch.completion == pytest.approx(0.8)
    assert watch.seconds_watched == round(0.8 * NOMINAL_RUNTIME_SECONDS)
    rating = events[3]
    assert isinstance(rating, RatingEvent)
    assert (rating.user_id, rating.movie_id, rating.rating) == ("alice", 10, 4.5)


def test_events_round_trip_through_the_contract() -> None:
    for event in iter_events(tiny()):
        wire = dump_event(event)
        assert parse_event(wire) == event
        assert json.loads(wire)["occurred_at"].endswith("Z")


def test_event_ids_are_deterministic_and_unique() -> None:
    first = [e.event_id for e in iter_events(tiny())]
    again = [e.event_id for e in iter_events(tiny())]
    assert first == again
    assert len(set(first)) == len(first)
    renamed = {e.event_id for e in iter_events(tiny("other"))}
    assert not renamed & set(first)


def test_partition_keys() -> None:
    keys = [partition_key(e) for e in iter_events(tiny())]
    assert keys[:5] == ["alice", "bob", "carol", "movie-10", "movie-20"]
    assert keys[5:] == ["bob", "alice", "bob", "alice", "alice", "bob"]


def test_empty_dataset() -> None:
    empty = Dataset(
        name="empty",
        users=Users(ids=[], region=[]),
        movies=Movies(
            ids=np.zeros(0, dtype=np.int64), titles=[], genres=[], year=np.zeros(0, dtype=np.int16)
        ),
        interactions=Interactions(
            user=np.zeros(0, dtype=np.int32),
            movie=np.zeros(0, dtype=np.int32),
            value=np.zeros(0, dtype=np.float32),
            timestamp=np.zeros(0, dtype=np.int64),
            kind=np.zeros(0, dtype=np.int8),
        ),
    )
    assert list(iter_events(empty)) == []


def test_synthetic_events_validate() -> None:
    data = generate(SyntheticConfig(seed=2, n_users=100, n_movies=60, n_events=2_000, n_regions=3))
    events = list(iter_events(data))
    assert len(events) == event_count(data)
    for event in events:
        assert parse_event(dump_event(event)) == event
    interactions = [e for e in events if isinstance(e, RatingEvent | WatchEvent)]
    assert len(interactions) == 2_000
    times = [e.occurred_at for e in interactions]
    assert times == sorted(times)


@pytest.mark.movielens
def test_ml_latest_small_events_validate(movielens_small: Path) -> None:
    data = load_movielens(movielens_small)
    count = 0
    for event in iter_events(data):
        parse_event(dump_event(event))
        count += 1
    assert count == 610 + 9742 + 100836


class ListSink:
    def __init__(self) -> None:
        self.calls: list[list[tuple[bytes, str]]] = []

    def put(self, records: Sequence[tuple[bytes, str]]) -> int:
        self.calls.append(list(records))
        return len(records)


def test_publish_batches_and_reports_progress() -> None:
    data = tiny()
    sink = ListSink()
    progress: list[tuple[int, int]] = []
    sent = publish(data, sink, lambda done, total: progress.append((done, total)), batch_size=4)
    assert sent == 11
    assert [len(call) for call in sink.calls] == [4, 4, 3]
    assert progress == [(4, 11), (8, 11), (11, 11)]
    published = [record for call in sink.calls for record in call]
    expected = [(dump_event(e), partition_key(e)) for e in iter_events(data)]
    assert published == expected


# --- KinesisStream, against a fake client ------------------------------------------------------------


class FakeKinesis:
    """Accepts records, except those whose data is in ``fail`` for the first ``fail_times`` tries."""

    def __init__(self, fail: set[bytes] | None = None, fail_times: int = 1) -> None:
        self.fail = fail or set()
        self.fail_times = fail_times
        self.attempts: dict[bytes, int] = {}
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[tuple[bytes, str]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        assert StreamName == "events"
        assert len(Records) <= MAX_BATCH_RECORDS
        assert sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in Records) <= MAX_BATCH_BYTES
        self.calls.append(Records)
        results: list[dict[str, Any]] = []
        for record in Records:
            data = record["Data"]
            self.attempts[data] = self.attempts.get(data, 0) + 1
            if data in self.fail and self.attempts[data] <= self.fail_times:
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"}
                )
            else:
                self.stored.append((data, record["PartitionKey"]))
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-000000000000"})
        failed = sum("ErrorCode" in r for r in results)
        return {"FailedRecordCount": failed, "Records": results}


def records(n: int, size: int = 10) -> list[tuple[bytes, str]]:
    return [(f"{i:0{size}d}".encode(), f"user-{i % 7}") for i in range(n)]


def stream(client: FakeKinesis, sleeps: list[float] | None = None, **options: Any) -> KinesisStream:
    log = sleeps if sleeps is not None else []
    return KinesisStream("events", client, sleep=log.append, jitter=random.Random(0), **options)


def test_put_splits_at_500_records() -> None:
    client = FakeKinesis()
    assert stream(client).put(records(1_201)) == 1_201
    assert [len(c) for c in client.calls] == [500, 500, 201]
    assert client.stored == records(1_201)


def test_put_splits_at_5_mib() -> None:
    big = [(b"x" * (MAX_RECORD_BYTES - 10), f"k{i}") for i in range(12)]
    client = FakeKinesis()
    stream(client).put(big)
    assert [len(c) for c in client.calls] == [5, 5, 2]
    assert [data for data, _ in client.stored] == [data for data, _ in big]


def test_batches_respect_both_limits() -> None:
    mixed = records(700, size=8) + [(b"y" * 600_000, "big")] * 20
    groups = batches(mixed)
    assert [r for group in groups for r in group] == mixed
    assert all(len(g) <= MAX_BATCH_RECORDS for g in groups)
    assert all(sum(len(d) + len(k) for d, k in g) <= MAX_BATCH_BYTES for g in groups)


def test_oversized_record_or_bad_key_is_refused_before_sending() -> None:
    client = FakeKinesis()
    with pytest.raises(ValueError, match="exceeds"):
        stream(client).put([(b"x" * MAX_RECORD_BYTES, "k")])
    with pytest.raises(ValueError, match="partition key"):
        stream(client).put([(b"x", "")])
    with pytest.raises(ValueError, match="partition key"):
        stream(client).put([(b"x", "k" * 257)])
    assert client.calls == []


def test_partial_failure_resends_only_the_failed_entries() -> None:
    batch = records(10)
    failing = {batch[2][0], batch[7][0]}
    client = FakeKinesis(fail=failing, fail_times=2)
    sleeps: list[float] = []
    assert stream(client, sleeps, base_delay_s=0.1, max_delay_s=1.0).put(batch) == 10
    assert [len(c) for c in client.calls] == [10, 2, 2]
    assert [r["Data"] for r in client.calls[1]] == [batch[2][0], batch[7][0]]
    assert sorted(client.stored) == sorted(batch)  # each record stored exactly once
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 0.1
    assert 0 <= sleeps[1] <= 0.2


def test_backoff_is_bounded() -> None:
    client = FakeKinesis(fail={b"0000000000"}, fail_times=9)
    sleeps: list[float] = []
    stream(client, sleeps, max_attempts=10, base_delay_s=0.5, max_delay_s=1.5).put(records(1))
    assert len(sleeps) == 9
    assert max(sleeps) <= 1.5


def test_records_still_failing_after_every_attempt_raise_with_a_count() -> None:
    batch = records(600)
    failing = {data for data, _ in batch[::100]}
    client = FakeKinesis(fail=failing, fail_times=100)
    with pytest.raises(StreamPutError, match="6 of 600 records") as raised:
        stream(client, max_attempts=3).put(batch)
    assert raised.value.failed == 6
    assert raised.value.error_codes == {"ProvisionedThroughputExceededException": 6}
    assert len(client.stored) == 594
