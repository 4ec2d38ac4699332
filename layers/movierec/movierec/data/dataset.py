"""The in-memory data model every source produces and every consumer (publisher, training) reads.

Columnar numpy arrays keep 25M interactions within a few hundred MB: an interaction costs
4 + 4 + 4 + 8 + 1 = 21 bytes. Users and movies are addressed by dense row indexes; their external ids
(the ones on the wire and in the API) live in ``users.ids`` / ``movies.ids``.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

UNKNOWN = ""
"""The value of a categorical user attribute the source does not provide."""


class InteractionKind(IntEnum):
    """Stored in ``Interactions.kind`` as int8; the values are part of the NCF/feature pipeline."""

    RATING = 0
    WATCH = 1
    CLICK = 2
    ADD_TO_LIST = 3


@dataclass(frozen=True)
class Interactions:
    user: npt.NDArray[np.int32]  # row index into Users
    movie: npt.NDArray[np.int32]  # row index into Movies
    value: npt.NDArray[np.float32]  # rating (0.5-5) for RATING, completion (0-1) for WATCH, else 1.0
    timestamp: npt.NDArray[np.int64]  # epoch seconds
    kind: npt.NDArray[np.int8]  # InteractionKind

    def __post_init__(self) -> None:
        n = len(self.user)
        if not all(len(column) == n for column in (self.movie, self.value, self.timestamp, self.kind)):
            raise ValueError("interaction columns must have equal lengths")

    def __len__(self) -> int:
        return len(self.user)


@dataclass(frozen=True)
class Users:
    ids: list[str]  # external user id, as on the wire
    region: list[str]  # UNKNOWN where the source has none
    gender: list[str] = field(default_factory=list)  # optional columns: empty list or one per user
    age: npt.NDArray[np.int16] = field(default_factory=lambda: np.zeros(0, dtype=np.int16))  # 0 = unknown
    occupation: list[str] = field(default_factory=list)
    country: list[str] = field(default_factory=list)  # ISO 3166 alpha-2 as signed up; UNKNOWN if none

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Movies:
    ids: npt.NDArray[np.int64]  # external movie id
    titles: list[str]
    genres: list[tuple[str, ...]]
    year: npt.NDArray[np.int16]  # 0 = unknown

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Dataset:
    name: str  # e.g. "ml-latest-small", "synthetic(seed=7, users=1000)"
    users: Users
    movies: Movies
    interactions: Interactions


def dataset_to_bytes(dataset: Dataset) -> bytes:
    """A compact, lossless ``.npz`` of a dataset: how pipeline stages hand data to each other."""
    users, movies, interactions = dataset.users, dataset.movies, dataset.interactions
    header = {
        "name": dataset.name,
        "user_ids": users.ids,
        "region": users.region,
        "gender": users.gender,
        "occupation": users.occupation,
        "country": users.country,
        "titles": movies.titles,
        "genres": [list(g) for g in movies.genres],
    }
    buffer = io.BytesIO()
    np.savez(
        buffer,
        header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
        age=users.age,
        movie_ids=movies.ids,
        year=movies.year,
        user=interactions.user,
        movie=interactions.movie,
        value=interactions.value,
        timestamp=interactions.timestamp,
        kind=interactions.kind,
    )
    return buffer.getvalue()


def dataset_from_bytes(data: bytes) -> Dataset:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        header = json.loads(arrays["header"].tobytes())
        return Dataset(
            name=header["name"],
            users=Users(
                header["user_ids"],
                header["region"],
                header["gender"],
                arrays["age"],
                header["occupation"],
                header.get("country", []),  # exports written before the column existed have none
            ),
            movies=Movies(
                arrays["movie_ids"], header["titles"], [tuple(g) for g in header["genres"]], arrays["year"]
            ),
            interactions=Interactions(
                arrays["user"], arrays["movie"], arrays["value"], arrays["timestamp"], arrays["kind"]
            ),
        )
