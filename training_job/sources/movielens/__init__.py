"""Load any MovieLens release into the in-memory :class:`~movierec.data.dataset.Dataset`.

The release is detected from the files in the folder:

========================  =============================================  ===============================
release                   files                                          notes
========================  =============================================  ===============================
100K                      ``u.data``, ``u.item``, ``u.user``             tab / ``|``, latin-1, zip codes
1M                        ``ratings.dat``, ``movies.dat``, ``users.dat``  ``::``, latin-1, zip codes
10M                       ``ratings.dat``, ``movies.dat``                ``::``, UTF-8, no users file
20M, 25M, latest(-small)  ``ratings.csv``, ``movies.csv``                CSV, UTF-8, no users file
========================  =============================================  ===============================

Ratings are parsed in fixed-size byte chunks by numpy's C parser, so 25M ratings never become 25M
Python objects: memory is the final columns (21 bytes a rating) plus one chunk. Movies and users are
small and parsed line by line, which is where the text quirks live (quoted commas, latin-1, CRLF).

The package reads a release in three parts: :mod:`.release` tells which release a folder holds,
:mod:`.text` parses the movies and users files, :mod:`.ratings` the ratings file; :mod:`.attributes`
reads regions, years and genres the same way for every release.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.data.dataset import UNKNOWN, Dataset, InteractionKind, Interactions, Users
from training_job.sources.movielens.attributes import (
    INTERNATIONAL,
    ZIP_REGIONS,
    region_from_zip,
    split_genres,
    year_from_title,
)
from training_job.sources.movielens.ratings import CHUNK_BYTES, dense_codes, read_ratings
from training_job.sources.movielens.release import (
    RELEASE_FILES,
    MovieLensFormatError,
    Release,
    detect_release,
    expected_files,
)
from training_job.sources.movielens.text import (
    UserTable,
    genre_names_100k,
    read_movies_100k,
    read_movies_csv,
    read_movies_dat,
    read_users,
    user_1m,
    user_100k,
)


def load_movielens(path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> Dataset:
    """Load the MovieLens release in ``path``; raises :class:`MovieLensFormatError` on bad input.

    User ids become strings ("42"), movie ids stay integers; every interaction is a RATING. Interactions
    keep the file's order. The dataset is named after the folder (``ml-latest-small``).
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    path = Path(path)
    release = detect_release(path)
    if release is Release.ML_100K:
        movies = read_movies_100k(path / "u.item", genre_names_100k(path / "u.genre"))
        users: UserTable | None = read_users(path / "u.user", "|", user_100k)
        ratings = path / "u.data"
        separator, header = b"\t", None
    elif release is Release.ML_1M or release is Release.ML_10M:
        movies = read_movies_dat(path / "movies.dat")
        users = read_users(path / "users.dat", "::", user_1m) if release is Release.ML_1M else None
        ratings = path / "ratings.dat"
        separator, header = b"::", None
    else:
        movies = read_movies_csv(path / "movies.csv")
        users = None
        ratings = path / "ratings.csv"
        separator, header = b",", ("userId", "movieId", "rating", "timestamp")

    user_raw, movie_row, value, timestamp = read_ratings(
        ratings, separator, header, movies.ids, users.ids if users else None, chunk_bytes
    )
    if users is None:
        user_ids, user_index = dense_codes(user_raw)
        user_table = Users(ids=[str(u) for u in user_ids.tolist()], region=[UNKNOWN] * len(user_ids))
    else:
        user_index = user_raw  # already mapped to rows of the users file
        user_table = users.to_users()
    del user_raw
    interactions = Interactions(
        user=user_index,
        movie=movie_row,
        value=value,
        timestamp=timestamp,
        kind=np.full(len(value), InteractionKind.RATING, dtype=np.int8),
    )
    return Dataset(name=path.resolve().name, users=user_table, movies=movies, interactions=interactions)


__all__ = [
    "CHUNK_BYTES",
    "INTERNATIONAL",
    "RELEASE_FILES",
    "ZIP_REGIONS",
    "MovieLensFormatError",
    "Release",
    "detect_release",
    "expected_files",
    "load_movielens",
    "region_from_zip",
    "split_genres",
    "year_from_title",
]
