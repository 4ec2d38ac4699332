"""One test per patch in infra/local/servers/mongoeco_patches.py, against the patched mongoeco wire server.

Each patch replaces a slow path of mongoeco with a shortcut; each test checks that the server reports
the patch applied and that the behaviour the shortcut must keep (what MongoDB does) still holds in the
cases the shortcut changes. Skipped without ``.venv-mongo`` (make venv creates it).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from bson.int64 import Int64
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from infra.local.servers import MongoServer, mongo_backend_available

Document = dict[str, Any]
PATCHES = (
    "unique-_id-scan",
    "numeric-unique-scan",
    "feature-scans",
    "indexed-miss",
    "no-change-dispatch",
    "admin-renameCollection",
)

pytestmark = pytest.mark.skipif(
    not mongo_backend_available("mongoeco"), reason="no .venv-mongo (make venv creates it)"
)


@pytest.fixture(scope="module")
def server() -> Iterator[MongoServer]:
    with MongoServer(backend="mongoeco") as started:
        yield started


@pytest.fixture(scope="module")
def applied(server: MongoServer) -> set[str]:
    """The patches the server says it applied (its start-up line: ``patches: a, b``)."""
    found = re.search(r"\(patches: ([^)]*)\)", server.log_path.read_text())
    assert found, "the mongoeco server did not report its patches"
    return {name.strip() for name in found.group(1).split(",")}


@pytest.fixture(scope="module")
def client(server: MongoServer) -> Iterator[pymongo.MongoClient[Document]]:
    # The options our store uses (movierec.stores.mongo.connect_mongo).
    connection: pymongo.MongoClient[Document] = pymongo.MongoClient(
        server.uri, tz_aware=True, retryWrites=False, serverSelectionTimeoutMS=5_000
    )
    yield connection
    connection.close()


@pytest.fixture
def db(client: pymongo.MongoClient[Document]) -> Iterator[Database[Document]]:
    name = f"patches_{uuid.uuid4().hex[:12]}"
    yield client[name]
    client.drop_database(name)


def test_every_patch_is_applied(applied: set[str]) -> None:
    assert applied == set(PATCHES)


def test_unique_id_scan_duplicates_are_still_found_by_lookup(
    applied: set[str], db: Database[Document]
) -> None:
    """Without the scan, a duplicate ``_id`` is found by storage-key lookups, numbers in every type."""
    assert "unique-_id-scan" in applied
    users = db["users"]
    users.insert_one({"_id": "u1"})
    with pytest.raises(DuplicateKeyError):
        users.insert_one({"_id": "u1"})
    movies = db["movies"]
    movies.insert_one({"_id": 7})
    for same in (7.0, Int64(7)):
        with pytest.raises(DuplicateKeyError):
            movies.insert_one({"_id": same})
    movies.insert_one({"_id": 7.5})  # a different number is a different key
    assert movies.count_documents({}) == 2


def test_numeric_unique_scan_answers_from_index_rows(applied: set[str], db: Database[Document]) -> None:
    """A unique index on a numeric field rejects 1 after 1.0 (and Int64(1)) without decoding documents."""
    assert "numeric-unique-scan" in applied
    movies = db["movies"]
    movies.create_index([("movie_id", 1)], unique=True, name="movie_id_unique")
    movies.insert_one({"movie_id": 1.0})
    for same in (1, Int64(1)):
        with pytest.raises(DuplicateKeyError):
            movies.insert_one({"movie_id": same})
    movies.insert_one({"movie_id": 2})
    assert movies.count_documents({}) == 2


def test_feature_scans_forget_a_negative_answer_when_a_write_introduces_it(
    applied: set[str], db: Database[Document]
) -> None:
    """ "No document has an array / a tagged value here" is remembered until a write or a move changes it."""
    assert "feature-scans" in applied
    items: Collection[Document] = db["items"]
    items.create_index([("tags", 1)], name="tags")
    items.insert_one({"k": "plain", "tags": "x"})
    assert items.count_documents({"tags": "y"}) == 0  # remembered: no arrays under "tags"
    items.insert_one({"k": "array", "tags": ["x", "y"]})
    assert items.count_documents({"tags": "y"}) == 1  # the write that introduced one was seen
    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert items.count_documents({"when": moment}) == 0  # remembered: no tagged values under "when"
    items.insert_one({"k": "dated", "when": moment})
    assert items.count_documents({"when": moment}) == 1
    # A rename moves documents without writing them: what was known about the target is forgotten.
    other = db["other"]
    other.insert_one({"tags": "z"})
    assert other.count_documents({"tags": "y"}) == 0
    other.drop()
    items.rename("other")
    assert db["other"].count_documents({"tags": "y"}) == 1


def test_indexed_miss_stops_only_where_a_scan_could_find_nothing(
    applied: set[str], db: Database[Document]
) -> None:
    """An upsert that misses the index inserts; one whose value sits in an array or an ``_id`` matches."""
    assert "indexed-miss" in applied
    users = db["users"]
    users.create_index([("user_id", 1)], name="user_id")
    assert users.update_one({"user_id": "u1"}, {"$set": {"n": 1}}, upsert=True).upserted_id is not None
    assert users.update_one({"user_id": "u1"}, {"$inc": {"n": 1}}, upsert=True).upserted_id is None
    users.insert_one({"user_id": ["u2", "u3"]})  # an array: a miss in the scalar index is not final
    assert users.update_one({"user_id": "u3"}, {"$set": {"hit": True}}, upsert=True).upserted_id is None
    assert users.count_documents({}) == 2
    events = db["events"]
    events.insert_one({"_id": 5, "state": "new"})
    assert events.find_one({"_id": 5.0}, {"_id": 0}) == {"state": "new"}  # found by storage keys
    assert events.update_one({"_id": 5, "state": "done"}, {"$set": {"x": 1}}).matched_count == 0
    assert events.update_one({"_id": Int64(5), "state": "new"}, {"$set": {"x": 1}}).matched_count == 1


def test_no_change_dispatch_leaves_writes_acknowledged_and_visible(
    applied: set[str], db: Database[Document]
) -> None:
    """Change-stream delivery is off (we never ``watch``); every write is still acknowledged and read."""
    assert "no-change-dispatch" in applied
    events = db["events"]
    result = events.insert_many([{"_id": n} for n in range(200)])
    assert len(result.inserted_ids) == 200
    assert events.delete_many({"_id": {"$gte": 100}}).deleted_count == 100
    assert events.count_documents({}) == 100


def test_admin_rename_collection_runs_on_the_collections_database(
    applied: set[str], client: pymongo.MongoClient[Document], db: Database[Document]
) -> None:
    """pymongo sends renameCollection to ``admin`` with full namespaces, as MongoDB requires."""
    assert "admin-renameCollection" in applied
    db["staging"].insert_one({"_id": 1})
    db["staging"].create_index([("k", 1)], name="k")
    client.admin.command("renameCollection", f"{db.name}.staging", to=f"{db.name}.live")
    assert db.list_collection_names() == ["live"]
    assert db["live"].count_documents({}) == 1
    assert "k" in db["live"].index_information()
