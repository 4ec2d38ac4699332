"""MongoDB writes for ingest: raw events, user profiles and counters, movie metadata.

One ``bulk_write(ordered=False)`` per collection per batch. Redelivery is harmless:
- events are keyed by ``event_id`` (the ``_id`` index rejects a second copy);
- user counters are guarded by a window of recently applied event ids inside the user document, so the
  check and the increment are one atomic single-document update;
- profile fields and movie metadata are last-writer-wins by event version, so order does not matter.

A guarded upsert whose guard fails tries to insert an existing ``_id`` and is rejected with duplicate
key error 11000: for those operations that is the expected "already applied / older" outcome.

Statements, not bytes, are what a write costs, so each user gets one statement per batch (counters and
profile fields together) and each movie upsert one (status and metadata together). Such a statement is
guarded by all of its parts at once; when it is rejected, its parts are sent again one guarded statement
each, so exactly the new events count and exactly the newer fields win. Only classic update operators
are used: Amazon DocumentDB rejects updates written as aggregation pipelines.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from pydantic import ValidationError
from pymongo import ASCENDING, InsertOne, UpdateOne
from pymongo.database import Database
from pymongo.errors import BulkWriteError, PyMongoError

from movierec.contracts import MovieChange, ProfileChange
from movierec.errors import StoreUnavailableError
from movierec.events import EVENT_ADAPTER, Event, dump_event
from movierec.stores.mongo import Document

DUPLICATE_KEY = 11000

APPLIED_WINDOW = 1_024
"""Event ids remembered per user for counter idempotency; larger than any batch a shard redelivers."""

EVENTS = "events"
USERS = "users"
MOVIES = "movies"

# Secondary indexes, each for a read the product needs; every index is paid for by every insert, so one
# that no read needs is not kept (``events.occurred_at`` and ``users.last_seen`` were dropped for that reason:
# 5-10% of a batch's MongoDB time on the local server, docs/benchmarks.md finding 5).
_INDEXES: dict[str, list[tuple[str, list[tuple[str, int]]]]] = {
    EVENTS: [
        # One user's events in time order: what erasure and data-export requests look up.
        ("user_time", [("user_id", ASCENDING), ("occurred_at", ASCENDING)]),
        # The training export: engagement types before a cutoff (training_source.read_dataset).
        ("type_time", [("type", ASCENDING), ("occurred_at", ASCENDING)]),
    ],
    USERS: [],
    MOVIES: [],
}


BODY_DIGEST = "body_sha256"
"""Field of a stored event: SHA-256 of its canonical wire form, to tell a redelivery (same body) from an
event id reused by a different event. Events stored before the field existed have none; a repeat of
one of those counts as a redelivery."""


@dataclass(frozen=True)
class EventPage:
    """Stored events read back, and how many stored documents no longer validate as an event."""

    events: list[Event]
    unreadable: int


def body_digest(event: Event) -> str:
    """SHA-256 of the event's canonical wire form: what ``body_sha256`` holds."""
    return sha256(dump_event(event)).hexdigest()


@dataclass(frozen=True)
class StoredEvents:
    duplicate_ids: frozenset[str]  # the same event, stored by an earlier delivery
    stored_digests: dict[str, str]  # of ids an earlier, different event already holds: its digest

    @property
    def conflicting_ids(self) -> frozenset[str]:
        return frozenset(self.stored_digests)

    @property
    def duplicates(self) -> int:
        return len(self.duplicate_ids)


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

    def store_events(self, events: Sequence[Event]) -> StoredEvents:
        """Insert the raw events first: the id index decides which are new, repeats or conflicts.

        Raises StoreUnavailableError when MongoDB cannot take them (safe to retry whole)."""
        try:
            self.ensure_indexes()
            now = datetime.now(UTC)
            documents = [_event_document(e, now) for e in events]
            repeated = _bulk(self._db[EVENTS], [InsertOne(d) for d in documents])
            conflicts = self._conflicts({documents[i]["_id"]: documents[i][BODY_DIGEST] for i in repeated})
        except PyMongoError as error:
            raise StoreUnavailableError(f"MongoDB: {error}") from error
        ids = frozenset(str(documents[i]["_id"]) for i in repeated)
        return StoredEvents(duplicate_ids=ids - conflicts.keys(), stored_digests=conflicts)

    def write_effects(
        self, events: Sequence[Event], profiles: Sequence[ProfileChange], movies: Sequence[MovieChange]
    ) -> None:
        """User counters and profiles, movie metadata; idempotent. Raises StoreUnavailableError."""
        try:
            self._write_users(events, profiles)
            self._write_movies(movies)
        except PyMongoError as error:
            raise StoreUnavailableError(f"MongoDB: {error}") from error

    def read_events(
        self, types: Sequence[str], *, since: datetime | None = None, page_size: int = 1_000
    ) -> Iterator[EventPage]:
        """Stored events of ``types`` (occurred at or after ``since``), a page at a time, by the
        ``type_time`` index; memory stays bounded by the page. Raises StoreUnavailableError."""
        query: dict[str, Any] = {"type": {"$in": list(types)}}
        if since is not None:
            query["occurred_at"] = {"$gte": since}
        try:
            cursor = self._db[EVENTS].find(query, batch_size=page_size)
            page: list[Document] = []
            for document in cursor:
                page.append(document)
                if len(page) >= page_size:
                    yield _event_page(page)
                    page = []
            if page:
                yield _event_page(page)
        except PyMongoError as error:
            raise StoreUnavailableError(f"MongoDB: {error}") from error

    def count_movies(self) -> int:
        """How many movies the catalogue holds (the denominator of coverage). Raises
        StoreUnavailableError."""
        try:
            return int(self._db[MOVIES].count_documents({}))
        except PyMongoError as error:
            raise StoreUnavailableError(f"MongoDB: {error}") from error

    def _conflicts(self, digests: dict[str, str]) -> dict[str, str]:
        """Of ids that were already stored, those whose stored body differs from this delivery's, with
        the stored body's digest."""
        if not digests:
            return {}
        stored = self._db[EVENTS].find({"_id": {"$in": list(digests)}}, {BODY_DIGEST: 1})
        return {
            str(d["_id"]): str(d[BODY_DIGEST])
            for d in stored
            if d.get(BODY_DIGEST, digests[d["_id"]]) != digests[d["_id"]]
        }

    def _write_users(self, events: Sequence[Event], profiles: Sequence[ProfileChange]) -> None:
        by_user = _events_by_user(events)
        fields = _newest_fields(profiles)
        users = list(by_user)
        grouped = [_user_operation(user, by_user[user], fields.get(user, {})) for user in users]
        # A profile change always comes with its user's event; this only keeps a stray one from being lost.
        strays = [
            op for user in fields if user not in by_user for op in _profile_operations(user, fields[user])
        ]
        rejected = _bulk(self._db[USERS], grouped + strays)
        retry = [
            op
            for index in sorted(rejected)
            if index < len(users)
            for op in _user_parts(users[index], by_user[users[index]], fields.get(users[index], {}))
        ]
        _bulk(self._db[USERS], retry)

    def _write_movies(self, movies: Sequence[MovieChange]) -> None:
        rejected = _bulk(self._db[MOVIES], [_movie_operation(change) for change in movies])
        retry = [op for index in sorted(rejected) for op in _movie_parts(movies[index])]
        _bulk(self._db[MOVIES], retry)


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
    document[BODY_DIGEST] = body_digest(event)
    return document


_BOOKKEEPING = ("_id", "ingested_at", BODY_DIGEST)


def _stored_event(document: Document) -> Event:
    """The event a document of ``events`` holds: :func:`_event_document` undone (times at MongoDB's
    millisecond precision)."""
    fields = {k: v for k, v in document.items() if k not in _BOOKKEEPING}
    return EVENT_ADAPTER.validate_python({**fields, "event_id": document["_id"]})


def _event_page(documents: Sequence[Document]) -> EventPage:
    events: list[Event] = []
    for document in documents:
        try:
            events.append(_stored_event(document))
        except ValidationError:
            continue  # stored under an older schema: counted, never fatal to a rebuild
    return EventPage(events, unreadable=len(documents) - len(events))


def _events_by_user(events: Sequence[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        user_id = getattr(event, "user_id", None)
        if user_id is not None:
            grouped[user_id].append(event)
    return grouped


Fields = dict[str, tuple[str | int, str]]
"""A user's newest profile fields in a batch: field -> (value, version)."""


def _newest_fields(profiles: Sequence[ProfileChange]) -> dict[str, Fields]:
    """Per user and field, the newest value in the batch: the only one last-writer-wins can keep."""
    newest: dict[str, Fields] = defaultdict(dict)
    for change in profiles:
        fields = newest[change.user_id]
        for field, value in change.fields.items():
            if field not in fields or fields[field][1] < change.version:
                fields[field] = (value, change.version)
    return newest


def _user_operation(user_id: str, events: Sequence[Event], fields: Fields) -> UpdateOne:
    """One atomic, guarded update of a user's counters (and newer profile fields) for this batch.

    The filter requires none of the event ids to be in the user's applied window, and each field's
    stored version to be older than the batch's; the update pushes the ids in. A redelivered event or
    a newer stored field matches nothing, and the upsert is rejected with 11000.
    """
    event_ids = [str(e.event_id) for e in events]
    counts = Counter(str(e.type) for e in events)
    query: Document = {
        "_id": user_id,
        "applied_event_ids": {"$nin": event_ids} if len(event_ids) > 1 else {"$ne": event_ids[0]},
    }
    update: Document = {
        "$inc": {f"counts.{kind}": n for kind, n in counts.items()},
        "$min": {"first_seen": min(e.occurred_at for e in events)},
        "$max": {"last_seen": max(e.occurred_at for e in events)},
        "$push": {"applied_event_ids": {"$each": event_ids, "$slice": -APPLIED_WINDOW}},
    }
    if fields:
        query["$and"] = [
            _older(f"profile_versions.{field}", version) for field, (_, version) in fields.items()
        ]
        update["$set"] = _field_values(fields)
    return UpdateOne(query, update, upsert=True)


def _user_parts(user_id: str, events: Sequence[Event], fields: Fields) -> list[UpdateOne]:
    """A rejected user update split into one guarded statement per event and per profile field."""
    if len(events) == 1 and not fields:
        return []  # its one guard failed: the event was applied before
    return [_user_operation(user_id, [event], {}) for event in events] + _profile_operations(user_id, fields)


def _profile_operations(user_id: str, fields: Fields) -> list[UpdateOne]:
    return [
        UpdateOne(
            {"_id": user_id, **_older(f"profile_versions.{field}", version)},
            {"$set": _field_values({field: (value, version)})},
            upsert=True,
        )
        for field, (value, version) in fields.items()
    ]


def _field_values(fields: Fields) -> Document:
    values: Document = {}
    for field, (value, version) in fields.items():
        values[f"profile.{field}"] = value
        values[f"profile_versions.{field}"] = version
    return values


def _movie_operation(change: MovieChange) -> UpdateOne:
    """Status and metadata are separate last-writer-wins registers (see realtime._APPLY_MOVIE); an
    upsert writes both, in one statement guarded by both."""
    if change.retired:
        return _newer_than(("status_version",), change.movie_id, change.version, {"retired": True})
    fields = _movie_metadata(change) | {"retired": False}
    return _newer_than(("status_version", "metadata_version"), change.movie_id, change.version, fields)


def _movie_parts(change: MovieChange) -> list[UpdateOne]:
    """A rejected upsert split into its two registers, each guarded on its own."""
    if change.retired:
        return []  # its one register holds a newer status
    movie, version = change.movie_id, change.version
    return [
        _newer_than(("status_version",), movie, version, {"retired": False}),
        _newer_than(("metadata_version",), movie, version, _movie_metadata(change)),
    ]


def _movie_metadata(change: MovieChange) -> Document:
    return {
        "title": change.title,
        "genres": list(change.genres),
        "year": change.year,
        "cast": list(change.cast),
        "plot": change.plot,
    }


def _newer_than(version_fields: tuple[str, ...], movie_id: int, version: str, fields: Document) -> UpdateOne:
    guards = [_older(field, version) for field in version_fields]
    query: Document = (
        {"_id": movie_id, **guards[0]} if len(guards) == 1 else {"_id": movie_id, "$and": guards}
    )
    return UpdateOne(query, {"$set": fields | dict.fromkeys(version_fields, version)}, upsert=True)


def _older(version_path: str, version: str) -> Document:
    """The stored version at this path is older than ``version``, or there is none yet."""
    return {"$or": [{version_path: {"$lt": version}}, {version_path: {"$exists": False}}]}
