"""The MongoDB operations our store relies on, run against every backend present.

Backends: ``external`` (MONGODB_URI), ``mongod`` (on PATH), ``mongoeco`` (.venv-mongo) and ``nx-27017``
(NX_27017_BIN or on PATH). Absent ones are skipped with the reason. The results decide which wire
server the local cloud uses; docs/mongodb-backend.md records them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson.decimal128 import Decimal128
from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError

from infra.local.servers import MongoBackend, MongoServer, mongo_backend_available

Document = dict[str, Any]
BACKENDS: tuple[MongoBackend, ...] = ("external", "mongod", "mongoeco", "nx-27017")
DUPLICATE_KEY = 11000
LARGE_COLLECTION_SIZE = 50_000


@pytest.fixture(scope="module", params=BACKENDS)
def backend_client(request: pytest.FixtureRequest) -> Iterator[pymongo.MongoClient[Document]]:
    backend: MongoBackend = request.param
    if not mongo_backend_available(backend):
        reasons = {
            "external": "MONGODB_URI is not set",
            "mongod": "no mongod on PATH",
            "mongoeco": "no .venv-mongo (make venv creates it)",
            "nx-27017": "nx-27017 is not installed (set NX_27017_BIN to try it)",
        }
        pytest.skip(reasons[backend])
    with MongoServer(backend=backend) as server:
        # The options our store uses (movierec.stores.mongo.connect_mongo).
        client: pymongo.MongoClient[Document] = pymongo.MongoClient(
            server.uri, tz_aware=True, retryWrites=False, serverSelectionTimeoutMS=5_000
        )
        yield client
        client.close()


@pytest.fixture
def db(backend_client: pymongo.MongoClient[Document]) -> Iterator[Database[Document]]:
    name = f"contract_{uuid.uuid4().hex[:12]}"
    yield backend_client[name]
    backend_client.drop_database(name)


def test_bulk_write_unordered_mixes_inserts_and_upserts(db: Database[Document]) -> None:
    events = db["events"]
    users = db["users"]
    events.create_index([("event_id", 1)], unique=True, name="event_id_unique")
    users.create_index([("user_id", 1)], unique=True, name="user_id_unique")
    seen = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    later = seen + dt.timedelta(hours=1)

    events.bulk_write([InsertOne({"event_id": "e1", "user_id": "u1"})], ordered=False)
    users.bulk_write(
        [
            UpdateOne(
                {"user_id": "u1"},
                {
                    "$set": {"region": "north"},
                    "$setOnInsert": {"first_seen": seen},
                    "$inc": {"counters.watch": 1},
                    "$max": {"last_seen": seen},
                    "$min": {"first_event": seen},
                    "$addToSet": {"genres": "Drama"},
                },
                upsert=True,
            ),
            UpdateOne(
                {"user_id": "u1"},
                {
                    "$set": {"region": "south"},
                    "$setOnInsert": {"first_seen": later},  # ignored: the document exists now
                    "$inc": {"counters.watch": 2, "counters.rating": 1},
                    "$max": {"last_seen": later},
                    "$min": {"first_event": later},  # ignored: later is not smaller
                    "$addToSet": {"genres": {"$each": ["Drama", "Comedy"]}},
                },
                upsert=True,
            ),
        ],
        ordered=False,
    )
    user = users.find_one({"user_id": "u1"}, {"_id": 0})
    assert user == {
        "user_id": "u1",
        "region": "south",
        "first_seen": seen,
        "counters": {"watch": 3, "rating": 1},
        "last_seen": later,
        "first_event": seen,
        "genres": ["Drama", "Comedy"],
    }


def test_duplicate_keys_are_reported_per_op_and_the_rest_applies(db: Database[Document]) -> None:
    events = db["events"]
    events.create_index([("event_id", 1)], unique=True, name="event_id_unique")
    events.insert_one({"event_id": "e1", "n": 0})

    with pytest.raises(BulkWriteError) as raised:
        events.bulk_write(
            [
                InsertOne({"event_id": "e1", "n": 1}),  # duplicate of the stored one
                InsertOne({"event_id": "e2", "n": 2}),
                InsertOne({"event_id": "e2", "n": 3}),  # duplicate within the batch
                UpdateOne({"event_id": "e3"}, {"$set": {"n": 4}}, upsert=True),
                InsertOne({"event_id": "e4", "n": 5}),
            ],
            ordered=False,
        )
    details = raised.value.details
    errors = details["writeErrors"]
    assert [(error["index"], error["code"]) for error in errors] == [(0, DUPLICATE_KEY), (2, DUPLICATE_KEY)]
    assert details["nInserted"] == 2
    assert details["nUpserted"] == 1
    assert sorted(doc["n"] for doc in events.find({}, {"_id": 0, "n": 1})) == [0, 2, 4, 5]

    with pytest.raises(DuplicateKeyError):
        events.insert_one({"event_id": "e4"})


def test_equality_filters_on_indexed_fields(db: Database[Document]) -> None:
    """Upserts find what they must: array elements, numbers of another type, documents indexed later.

    These guard the shortcuts infra/local/servers/mongoeco_patches.py adds to mongoeco.
    """
    items = db["items"]
    items.insert_many([{"k": "a", "tags": ["x", "y"]}, {"k": "b", "n": 1, "tags": "plain"}])
    items.create_index([("tags", 1)], name="tags")  # after the documents: must index them too
    items.create_index([("k", 1)], unique=True, name="k_unique")

    assert items.update_one({"tags": "y"}, {"$set": {"hit": 1}}, upsert=True).upserted_id is None
    assert items.update_one({"k": "b"}, {"$inc": {"n": 1}}, upsert=True).upserted_id is None
    assert items.count_documents({"n": 2.0}) == 1
    assert items.update_one({"k": "c"}, {"$set": {"n": 0}}, upsert=True).upserted_id is not None
    assert items.update_one({"tags": "q"}, {"$set": {"k": "d"}}, upsert=True).upserted_id is not None
    items.insert_one({"k": "e", "tags": ["q2"]})  # the first array under "tags" since the last miss
    assert items.update_one({"tags": "q2"}, {"$set": {"hit": 2}}, upsert=True).upserted_id is None
    assert items.count_documents({}) == 5

    movies = db["movies"]
    movies.create_index([("movie_id", 1)], unique=True, name="movie_id_unique")
    movies.insert_one({"movie_id": 7.0, "title": "Seven"})
    with pytest.raises(DuplicateKeyError):
        movies.insert_one({"movie_id": 7})  # 7 and 7.0 are one key
    assert movies.update_one({"movie_id": 7}, {"$set": {"year": 1995}}, upsert=True).upserted_id is None
    assert movies.count_documents({}) == 1


def test_filters_on_id(db: Database[Document]) -> None:
    """``_id`` lookups, alone and with more conditions; numbers of another type are the same ``_id``."""
    users = db["users"]
    guarded = {"_id": "u1", "applied": {"$ne": "e1"}}
    push = {"$push": {"applied": "e1"}, "$inc": {"n": 1}}
    assert users.update_one(guarded, push, upsert=True).upserted_id == "u1"
    # A redelivery matches nothing, so the upsert tries to insert "u1" again: rejected with 11000.
    with pytest.raises(DuplicateKeyError):
        users.update_one(guarded, push, upsert=True)
    assert users.update_one({"_id": "u1", "applied": {"$ne": "e2"}}, {"$inc": {"n": 1}}).matched_count == 1
    assert users.find_one({"_id": "u1"}, {"_id": 0}) == {"applied": ["e1"], "n": 2}

    movies = db["movies"]
    newer = {"_id": 7, "$or": [{"v": {"$lt": "b"}}, {"v": {"$exists": False}}]}
    assert movies.update_one(newer, {"$set": {"v": "b"}}, upsert=True).upserted_id == 7
    assert movies.update_one({"_id": 7.0}, {"$set": {"title": "Seven"}}).matched_count == 1
    with pytest.raises(DuplicateKeyError):
        movies.insert_one({"_id": 7.0})
    with pytest.raises(DuplicateKeyError):
        movies.update_one(newer, {"$set": {"v": "b"}}, upsert=True)  # not newer: no match, id taken
    assert movies.find_one({"_id": 7}) == {"_id": 7, "v": "b", "title": "Seven"}
    assert movies.count_documents({"_id": {"$in": [7, 8]}}) == 1


def test_create_index_is_idempotent_with_explicit_names(db: Database[Document]) -> None:
    events = db["events"]
    for _ in range(2):  # every cold start creates them again: that must be a no-op
        assert (
            events.create_index([("event_id", 1)], unique=True, name="event_id_unique") == "event_id_unique"
        )
        assert events.create_index([("user_id", 1), ("occurred_at", -1)], name="user_recent") == "user_recent"
    info = events.index_information()
    assert set(info) == {"_id_", "event_id_unique", "user_recent"}
    assert info["event_id_unique"]["key"] == [("event_id", 1)]
    assert info["event_id_unique"].get("unique") is True
    assert info["user_recent"]["key"] == [("user_id", 1), ("occurred_at", -1)]
    assert not info["user_recent"].get("unique", False)


@pytest.mark.slow
def test_projected_find_with_batch_size_over_a_large_collection(db: Database[Document]) -> None:
    ratings = db["ratings"]
    ratings.insert_many(
        (
            {"user_id": str(i % 997), "movie_id": i, "rating": (i % 10 + 1) / 2, "note": "x" * 20}
            for i in range(LARGE_COLLECTION_SIZE)
        ),
        ordered=False,
    )
    cursor = ratings.find({}, {"_id": 0, "movie_id": 1, "rating": 1}).batch_size(1_000)
    movie_ids = []
    for doc in cursor:
        assert set(doc) == {"movie_id", "rating"}
        movie_ids.append(doc["movie_id"])
    assert sorted(movie_ids) == list(range(LARGE_COLLECTION_SIZE))
    assert ratings.count_documents({"rating": {"$gte": 4.5}}) == LARGE_COLLECTION_SIZE // 5
    # Popularity groups every event: a blocking stage over more documents than fit a small budget.
    per_user = list(
        ratings.aggregate([{"$group": {"_id": "$user_id", "n": {"$sum": 1}}}, {"$sort": {"n": -1}}])
    )
    assert len(per_user) == 997
    assert sum(group["n"] for group in per_user) == LARGE_COLLECTION_SIZE


def test_aggregate_match_group_sort_limit(db: Database[Document]) -> None:
    watches = db["watches"]
    # movie m is watched m times in region north and once in region south; one event is too old.
    docs: list[Document] = [
        {"movie_id": m, "region": "north", "day": 2} for m in range(1, 21) for _ in range(m)
    ]
    docs += [{"movie_id": m, "region": "south", "day": 2} for m in range(1, 21)]
    docs.append({"movie_id": 1, "region": "north", "day": 0})
    watches.insert_many(docs)
    top = list(
        watches.aggregate(
            [
                {"$match": {"region": "north", "day": {"$gte": 1}}},
                {"$group": {"_id": "$movie_id", "count": {"$sum": 1}}},
                {"$sort": {"count": -1, "_id": 1}},
                {"$limit": 3},
            ]
        )
    )
    assert top == [{"_id": 20, "count": 20}, {"_id": 19, "count": 19}, {"_id": 18, "count": 18}]


def test_rename_keeps_documents_and_indexes(db: Database[Document]) -> None:
    staging = db["popularity_staging"]
    staging.create_index([("segment", 1)], name="segment")
    staging.insert_many([{"segment": "global", "rank": r} for r in range(5)])
    db["popularity"].insert_one({"segment": "stale"})

    staging.rename("popularity", dropTarget=True)  # how a rebuilt collection replaces the old one

    names = db.list_collection_names()
    assert "popularity_staging" not in names
    assert "popularity" in names
    live: Collection[Document] = db["popularity"]
    assert live.count_documents({}) == 5
    assert live.count_documents({"segment": "stale"}) == 0
    assert "segment" in live.index_information()


def test_decimal128_round_trips(db: Database[Document]) -> None:
    prices = db["prices"]
    prices.insert_many([{"k": "a", "v": Decimal128("4.5")}, {"k": "b", "v": Decimal128("0.1")}])
    stored = prices.find_one({"v": Decimal128("0.1")}, {"_id": 0})
    assert stored == {"k": "b", "v": Decimal128("0.1")}
    assert isinstance(stored["v"], Decimal128)
    assert [doc["k"] for doc in prices.find({}, {"_id": 0}).sort("v", -1)] == ["a", "b"]


def test_timezone_aware_datetimes_round_trip(db: Database[Document]) -> None:
    events = db["events"]
    india = dt.timezone(dt.timedelta(hours=5, minutes=30))
    occurred = dt.datetime(2024, 3, 10, 18, 45, 30, 123_000, tzinfo=india)
    events.insert_many([{"n": 1, "at": occurred}, {"n": 2, "at": occurred + dt.timedelta(days=1)}])
    stored = events.find_one({"n": 1})
    assert stored is not None
    assert stored["at"] == occurred  # the same instant ...
    assert stored["at"].utcoffset() == dt.timedelta(0)  # ... returned in UTC
    window = {"$gte": occurred - dt.timedelta(seconds=1), "$lt": occurred + dt.timedelta(hours=1)}
    assert [doc["n"] for doc in events.find({"at": window})] == [1]


def test_count_delete_and_drop(db: Database[Document]) -> None:
    items = db["items"]
    items.insert_many([{"n": n, "even": n % 2 == 0} for n in range(10)])
    assert items.count_documents({}) == 10
    assert items.count_documents({"even": True}) == 5
    assert items.delete_many({"even": True}).deleted_count == 5
    assert items.count_documents({}) == 5
    items.drop()
    assert "items" not in db.list_collection_names()
    assert items.count_documents({}) == 0
