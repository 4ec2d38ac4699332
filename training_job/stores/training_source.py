"""Reading the system of record for training: projected, batched cursors into compact numpy arrays.

Interactions stream through typed ``array`` buffers (a few bytes each), never a Python object per
event kept in memory, so tens of millions of events fit in a few GB.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from pymongo.database import Database

from movierec.data.dataset import UNKNOWN, Dataset, InteractionKind, Interactions, Movies, Users
from movierec.events import ENGAGEMENT_TYPES
from movierec.segments import MAX_AGE
from movierec.stores.documents import EVENTS, MOVIES, USERS
from movierec.stores.mongo import Document

CURSOR_BATCH = 10_000

_KIND_BY_TYPE = {name: InteractionKind[name.upper()] for name in ENGAGEMENT_TYPES}


def read_dataset(
    database: Database[Document], cutoff: datetime | None = None, name: str = "mongodb"
) -> Dataset:
    """Every engagement before ``cutoff`` (all when None), with the users and movies they reference."""
    user_index: dict[str, int] = {}
    movie_index: dict[int, int] = {}
    users, movies, values = array("i"), array("i"), array("f")
    times, kinds = array("q"), array("b")

    query: dict[str, Any] = {"type": {"$in": list(_KIND_BY_TYPE)}}
    if cutoff is not None:
        query["occurred_at"] = {"$lt": cutoff}
    projection = {
        "_id": 0,
        "type": 1,
        "user_id": 1,
        "movie_id": 1,
        "occurred_at": 1,
        "rating": 1,
        "completion": 1,
    }
    for doc in database[EVENTS].find(query, projection, batch_size=CURSOR_BATCH):
        kind = _KIND_BY_TYPE[doc["type"]]
        users.append(user_index.setdefault(doc["user_id"], len(user_index)))
        movies.append(movie_index.setdefault(int(doc["movie_id"]), len(movie_index)))
        times.append(int(doc["occurred_at"].timestamp()))
        kinds.append(int(kind))
        if kind is InteractionKind.RATING:
            values.append(float(doc["rating"]))
        elif kind is InteractionKind.WATCH:
            values.append(float(doc["completion"]))
        else:
            values.append(1.0)

    # Users and movies known only from profile/metadata events still belong in the dataset.
    profiles: dict[str, Document] = {}
    projection = {"_id": 1, "profile.region": 1, "profile.country": 1, "profile.birth_year": 1}
    for doc in database[USERS].find({}, projection, batch_size=CURSOR_BATCH):
        user_index.setdefault(doc["_id"], len(user_index))
        profiles[doc["_id"]] = doc.get("profile") or {}
    metadata: dict[int, Document] = {}
    for doc in database[MOVIES].find(
        {}, {"title": 1, "genres": 1, "year": 1, "retired": 1}, batch_size=CURSOR_BATCH
    ):
        movie_index.setdefault(int(doc["_id"]), len(movie_index))
        metadata[int(doc["_id"])] = doc

    # MongoDB returns documents in whatever order its plan yields (an index added or dropped changes
    # it), and the model's initialisation and sampling follow row and id order: one canonical order, so
    # the same events always make the same model.
    user_ids = sorted(user_index)
    movie_ids = sorted(movie_index)
    user_rows = _canonical_rows(list(user_index), user_ids)
    movie_rows = _canonical_rows(list(movie_index), movie_ids)
    interaction_user = user_rows[np.frombuffer(users, dtype=np.int32)]
    interaction_movie = movie_rows[np.frombuffer(movies, dtype=np.int32)]
    value_column = np.frombuffer(values, dtype=np.float32)
    time_column = np.frombuffer(times, dtype=np.int64)
    kind_column = np.frombuffer(kinds, dtype=np.int8)
    order = np.lexsort((value_column, kind_column, interaction_movie, interaction_user, time_column))
    # Age as of the cut-off year: what serving computes from the same birth year in that year.
    year = (cutoff or datetime.now(UTC)).year
    return Dataset(
        name=name,
        users=Users(
            ids=user_ids,
            region=[profiles.get(u, {}).get("region") or UNKNOWN for u in user_ids],
            age=np.asarray(
                [_age(profiles.get(u, {}).get("birth_year"), year) for u in user_ids], dtype=np.int16
            ),
            country=[profiles.get(u, {}).get("country") or UNKNOWN for u in user_ids],
        ),
        movies=Movies(
            ids=np.asarray(movie_ids, dtype=np.int64),
            titles=[metadata.get(m, {}).get("title") or "" for m in movie_ids],
            genres=[tuple(metadata.get(m, {}).get("genres") or ()) for m in movie_ids],
            year=np.asarray([metadata.get(m, {}).get("year") or 0 for m in movie_ids], dtype=np.int16),
        ),
        interactions=Interactions(
            user=interaction_user[order],
            movie=interaction_movie[order],
            value=value_column[order],
            timestamp=time_column[order],
            kind=kind_column[order],
        ),
    )


def _canonical_rows(first_seen: list[Any], canonical: list[Any]) -> npt.NDArray[np.int32]:
    """For each id's row in reading order, its row in the canonical order."""
    row_of = {identifier: row for row, identifier in enumerate(canonical)}
    return np.asarray([row_of[identifier] for identifier in first_seen], dtype=np.int32)


def _age(birth_year: Any, year: int) -> int:
    """Years since ``birth_year``; 0 (unknown) when there is none or it is not plausible."""
    if not isinstance(birth_year, int) or isinstance(birth_year, bool):
        return 0
    age = year - birth_year
    return age if 0 < age <= MAX_AGE else 0


def retired_movies(database: Database[Document]) -> set[int]:
    return {int(doc["_id"]) for doc in database[MOVIES].find({"retired": True}, {"_id": 1})}
