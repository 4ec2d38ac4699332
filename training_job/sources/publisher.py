"""Turn a :class:`~movierec.data.dataset.Dataset` into stream events and put them on a stream.

Order: one ``signup`` per user, one ``movie_upsert`` per movie, then every interaction as a
``rating`` / ``watch`` / ``click`` / ``add_to_list`` event in timestamp order (ties keep dataset order).

Event ids are uuid5 of the dataset name and the row's content, so publishing the same dataset twice
produces the same ids and ingest's idempotency drops the repeats. Partition keys are the user id (one
user's events land on one shard) and ``movie-<id>`` for catalogue events.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from movierec.data.dataset import Dataset, InteractionKind
from movierec.events import (
    AddToListEvent,
    ClickEvent,
    Event,
    EventType,
    MovieUpsertEvent,
    RatingEvent,
    SignupEvent,
    WatchEvent,
    dump_event,
)

EVENT_ID_NAMESPACE = uuid.UUID("5b0f6f0e-3c55-5f1e-9a59-6d6f76696572")
"""Fixed forever: changing it would give every republished event a new id."""

UNKNOWN_REGION = "unknown"
"""Sign-up region for users whose source has none (MovieLens 10M, 20M+): the contract requires one."""

NOMINAL_RUNTIME_SECONDS = 6_000
"""Datasets carry no runtimes; a watch's seconds_watched is its completion times this."""

MIN_PROFILE_AGE = 13
"""Ages below this are codes, not ages (ML-1M stores "under 18" as 1): no birth year is derived."""

PUBLISH_BATCH = 500
"""Records handed to the stream per put: one full PutRecords request."""

_MAX_TITLE, _MAX_GENRES = 512, 32
_MIN_YEAR, _MAX_YEAR = 1870, 2100
_ROWS_PER_STEP = 65_536  # interactions are converted to Python values this many at a time


class RecordSink(Protocol):
    """Anything that takes (data, partition key) records: ``training_job.stores.stream.KinesisStream``."""

    def put(self, records: Sequence[tuple[bytes, str]]) -> int: ...


def event_id(dataset_name: str, *parts: object) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, "/".join([dataset_name, *(str(p) for p in parts)]))


def partition_key(event: Event) -> str:
    user_id = getattr(event, "user_id", None)
    if isinstance(user_id, str):
        return user_id
    movie_id = getattr(event, "movie_id", None)
    return f"movie-{movie_id}" if isinstance(movie_id, int) else str(event.event_id)


def event_count(dataset: Dataset) -> int:
    return len(dataset.users) + len(dataset.movies) + len(dataset.interactions)


def iter_events(dataset: Dataset) -> Iterator[Event]:
    """Every event for ``dataset``, validated against the contract, in publishing order."""
    name = dataset.name
    users, movies, interactions = dataset.users, dataset.movies, dataset.interactions
    timestamps = interactions.timestamp
    epoch = int(timestamps.min()) if len(timestamps) else 0

    # A user signs up at their first interaction; one without any, when the catalogue begins.
    first_seen = np.full(len(users), epoch, dtype=np.int64)
    if len(interactions):
        first_seen[:] = np.iinfo(np.int64).max
        np.minimum.at(first_seen, interactions.user, timestamps)
        first_seen[first_seen == np.iinfo(np.int64).max] = epoch
    ages = users.age.tolist() if len(users.age) else [0] * len(users)
    for row, (user_id, source_region) in enumerate(zip(users.ids, users.region, strict=True)):
        when = _utc(int(first_seen[row]))
        region = source_region or UNKNOWN_REGION
        age = int(ages[row])
        yield SignupEvent(
            type=EventType.SIGNUP,
            event_id=event_id(name, "signup", user_id),
            occurred_at=when,
            user_id=user_id,
            region=region,
            country="US" if region.startswith("us-") else None,
            birth_year=when.year - age if age >= MIN_PROFILE_AGE else None,
        )

    catalogue_time = _utc(epoch)
    for movie_id, title, genres, year in zip(
        movies.ids.tolist(), movies.titles, movies.genres, movies.year.tolist(), strict=True
    ):
        yield MovieUpsertEvent(
            type=EventType.MOVIE_UPSERT,
            event_id=event_id(name, "movie", movie_id),
            occurred_at=catalogue_time,
            movie_id=movie_id,
            title=(title.strip() or f"Movie {movie_id}")[:_MAX_TITLE],
            genres=list(genres[:_MAX_GENRES]),
            year=year if _MIN_YEAR <= year <= _MAX_YEAR else None,
        )

    order = np.argsort(timestamps, kind="stable")
    movie_ids = movies.ids
    for start in range(0, len(order), _ROWS_PER_STEP):
        rows = order[start : start + _ROWS_PER_STEP]
        columns = zip(
            interactions.user[rows].tolist(),
            movie_ids[interactions.movie[rows]].tolist(),
            interactions.value[rows].tolist(),
            timestamps[rows].tolist(),
            interactions.kind[rows].tolist(),
            strict=True,
        )
        for user_row, movie_id, value, timestamp, kind in columns:
            yield _interaction(name, users.ids[user_row], movie_id, value, timestamp, InteractionKind(kind))


def _interaction(
    name: str, user_id: str, movie_id: int, value: float, timestamp: int, kind: InteractionKind
) -> Event:
    when = _utc(timestamp)
    if kind is InteractionKind.RATING:
        return RatingEvent(
            type=EventType.RATING,
            event_id=event_id(name, EventType.RATING, user_id, movie_id, timestamp),
            occurred_at=when,
            user_id=user_id,
            movie_id=movie_id,
            rating=min(5.0, max(0.5, round(value * 2) / 2)),
        )
    if kind is InteractionKind.WATCH:
        completion = min(1.0, max(0.0, round(value, 4)))
        return WatchEvent(
            type=EventType.WATCH,
            event_id=event_id(name, EventType.WATCH, user_id, movie_id, timestamp),
            occurred_at=when,
            user_id=user_id,
            movie_id=movie_id,
            seconds_watched=round(completion * NOMINAL_RUNTIME_SECONDS),
            completion=completion,
        )
    if kind is InteractionKind.CLICK:
        return ClickEvent(
            type=EventType.CLICK,
            event_id=event_id(name, EventType.CLICK, user_id, movie_id, timestamp),
            occurred_at=when,
            user_id=user_id,
            movie_id=movie_id,
        )
    return AddToListEvent(
        type=EventType.ADD_TO_LIST,
        event_id=event_id(name, EventType.ADD_TO_LIST, user_id, movie_id, timestamp),
        occurred_at=when,
        user_id=user_id,
        movie_id=movie_id,
    )


def _utc(epoch_seconds: int) -> datetime:
    return datetime.fromtimestamp(epoch_seconds, tz=UTC)


def publish(
    dataset: Dataset,
    stream: RecordSink,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_size: int = PUBLISH_BATCH,
) -> int:
    """Put every event of ``dataset`` on ``stream``; returns the count. ``progress(done, total)``
    is called after each batch."""
    total = event_count(dataset)
    sent = 0
    batch: list[tuple[bytes, str]] = []
    for event in iter_events(dataset):
        batch.append((dump_event(event), partition_key(event)))
        if len(batch) >= batch_size:
            sent += stream.put(batch)
            batch = []
            if progress is not None:
                progress(sent, total)
    if batch:
        sent += stream.put(batch)
        if progress is not None:
            progress(sent, total)
    return sent


__all__ = [
    "EVENT_ID_NAMESPACE",
    "MIN_PROFILE_AGE",
    "NOMINAL_RUNTIME_SECONDS",
    "UNKNOWN_REGION",
    "RecordSink",
    "event_count",
    "event_id",
    "iter_events",
    "partition_key",
    "publish",
]
