"""MongoDB writes for ingest: raw events, user profiles and counters, movie metadata.

One ``bulk_write(ordered=False)`` per collection per batch. Redelivery is harmless:
- events are keyed by ``event_id`` (the ``_id`` index rejects a second copy);
- user counters are guarded by a window of recently applied event ids inside the user document, so the
  check and the increment are one atomic single-document update;
- profile fields and movie metadata are last-writer-wins by event version, so order does not matter.

A guarded upsert whose guard fails tries to insert an existing ``_id`` and is rejected with duplicate
key error 11000: for those operations that is the expected "already applied / older" outcome.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DeleteOne, InsertOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from movierec.errors import StoreUnavailableError
from movierec.events import Event
from movierec.ingest.effects import MovieChange, ProfileChange
from movierec.stores.mongo import Document

DUPLICATE_KEY = 11000

APPLIED_WINDOW = 1_024
"""Event ids remembered per user for counter idempotency; larger than any batch a shard redelivers."""

EVENTS = "events"
USERS = "users"
MOVIES = "movies"

_INDEXES: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {
    EVENTS: [
        ("user_time", [("user_id", ASCENDING), ("occurred_at", ASCENDING)]),
        ("time", [("occurred_at", ASCENDING)]),
        ("type_time", [("type", ASCENDING), ("occurred_at", ASCENDING)]),
    ],
    USERS: [("last_seen", [("last_seen", ASCENDING)])],
    MOVIES: [],
}


@dataclass(frozen=True)
class WriteOutcome:
    stored: int
    duplicates: int


class EventDocuments:
    """The system of record: every valid event, plus the users and movies they describe."""

    def __init__(self, database: Database[Document]) -> None:
        self._db = database
        self._indexes_ready = False

    def ensure_indexes(self) -> None:
        """Idempotent; runs once per container, not per invocation."""
        if self._indexes_ready:
            return
        for collection, indexes in _INDEXES.items():
            for name, keys in indexes:
                self._db[collection].create_index(keys, name=name)
        self._indexes_ready = True

    def write(
        self,
        events: Sequence[Event],
        profiles: Sequence[ProfileChange],
        movies: Sequence[MovieChange],
    ) -> WriteOutcome:
        """Store a batch; raises StoreUnavailableError when MongoDB cannot take it (safe to retry whole)."""
        try:
            self.ensure_indexes()
            now = datetime.now(UTC)
            duplicates = _bulk(self._db[EVENTS], [InsertOne(_event_document(e, now)) for e in events])
            self._write_users(events, profiles)
            _bulk(self._db[MOVIES], [op for change in movies for op in _movie_operations(change)])
        except PyMongoError as error:
            raise StoreUnavailableError(f"MongoDB: {error}") from error
        return WriteOutcome(stored=len(events) - len(duplicates), duplicates=len(duplicates))

    def _write_users(self, events: Sequence[Event], profiles: Sequence[ProfileChange]) -> None:
        # One counter update per user (not per event) keeps the batch cheap. A user whose grouped
        # update was rejected had some events applied already (a partial redelivery): their events
        # are retried one by one, each guarded on its own, so exactly the new ones count.
        by_user = _events_by_user(events)
        users = list(by_user)
        grouped = [_counter_operation(user, by_user[user]) for user in users]
        rejected = _bulk(self._db[USERS], grouped + _profile_operations(profiles))
        retry = [
            _counter_operation(users[index], [event])
            for index in sorted(rejected)
            if index < len(users) and len(by_user[users[index]]) > 1
            for event in by_user[users[index]]
        ]
        _bulk(self._db[USERS], retry)

    def forget(self, event_ids: Sequence[str]) -> None:
        """Test and maintenance helper: remove raw events (for GDPR erasure and fixtures)."""
        _bulk(self._db[EVENTS], [DeleteOne({"_id": event_id}) for event_id in event_ids])


def _bulk(collection: Any, operations: Sequence[Any]) -> set[int]:
    """Run an unordered bulk write; return the indexes rejected as duplicates, raise anything else."""
    if not operations:
        return set()
    try:
        collection.bulk_write(list(operations), ordered=False)
    except BulkWriteError as error:
        errors = error.details.get("writeErrors", [])
        unexpected = [e for e in errors if e.get("code") != DUPLICATE_KEY]
        if unexpected or error.details.get("writeConcernErrors"):
            raise
        return {int(e["index"]) for e in errors}
    return set()


def _event_document(event: Event, ingested_at: datetime) -> Document:
    document = event.model_dump(mode="python", exclude_none=True)
    document["_id"] = str(document.pop("event_id"))
    document["type"] = str(event.type)
    document["ingested_at"] = ingested_at
    return document


def _events_by_user(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        user_id = getattr(event, "user_id", None)
        if user_id is not None:
            grouped[user_id].append(event)
    return grouped


def _counter_operation(user_id: str, events: Sequence[Event]) -> UpdateOne:
    """One atomic, guarded update of a user's counters for their events in this batch.

    The filter requires none of the event ids to be in the user's applied window, and the update pushes
    them in: a redelivered event matches nothing, and the upsert is rejected with 11000.
    """
    event_ids = [str(e.event_id) for e in events]
    counts = Counter(str(e.type) for e in events)
    return UpdateOne(
        {
            "_id": user_id,
            "applied_event_ids": {"$nin": event_ids} if len(event_ids) > 1 else {"$ne": event_ids[0]},
        },
        {
            "$inc": {f"counts.{kind}": n for kind, n in counts.items()},
            "$min": {"first_seen": min(e.occurred_at for e in events)},
            "$max": {"last_seen": max(e.occurred_at for e in events)},
            "$push": {"applied_event_ids": {"$each": event_ids, "$slice": -APPLIED_WINDOW}},
        },
        upsert=True,
    )


def _profile_operations(profiles: Sequence[ProfileChange]) -> list[UpdateOne]:
    operations: list[UpdateOne] = []
    for change in profiles:
        for field, value in change.fields.items():
            version_path = f"profile_versions.{field}"
            operations.append(
                UpdateOne(
                    {
                        "_id": change.user_id,
                        "$or": [{version_path: {"$lt": change.version}}, {version_path: {"$exists": False}}],
                    },
                    {"$set": {f"profile.{field}": value, version_path: change.version}},
                    upsert=True,
                )
            )
    return operations


def _movie_operations(change: MovieChange) -> list[UpdateOne]:
    """Status and metadata are separate last-writer-wins registers (see realtime._APPLY_MOVIE)."""
    operations = [_newer_than("status_version", change.movie_id, change.version, {"retired": change.retired})]
    if not change.retired:
        metadata = {
            "title": change.title,
            "genres": list(change.genres),
            "year": change.year,
            "cast": list(change.cast),
            "plot": change.plot,
        }
        operations.append(_newer_than("metadata_version", change.movie_id, change.version, metadata))
    return operations


def _newer_than(version_field: str, movie_id: int, version: str, fields: Document) -> UpdateOne:
    return UpdateOne(
        {"_id": movie_id, "$or": [{version_field: {"$lt": version}}, {version_field: {"$exists": False}}]},
        {"$set": fields | {version_field: version}},
        upsert=True,
    )
