"""User and movie feature matrices, computed as of a cut-off time.

Only pairs with ``timestamp < as_of`` are read, and the normalisation statistics come from entities
with such a pair, so anything that happens at or after the cut-off changes nothing (tested). Raw
values go into the dated parquet snapshot; the model sees ``FeatureNormalisation.apply(raw)``, and
the artifact stores that normalisation so the inputs can be rebuilt exactly.

User:  activity counts over 7/30/all days, days since last activity, mean rating, genre affinity,
       region (and gender/age where the source has them).
Movie: genres, year, popularity over 7/30/all days, days since first seen, (shrunk) mean rating.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv

from movierec.artifact import FeatureNormalisation
from movierec.data.dataset import UNKNOWN, Movies, Users
from training_job.data import Positives

DAY = 86_400
WINDOWS_DAYS = (7, 30)
MAX_REGIONS = 32  # the most common regions get a column each; the rest share none
RATING_PRIOR = 5.0  # a movie's mean rating is shrunk toward the global mean by this many ratings
NEVER_DAYS = 3650.0  # "days since last activity" of a user with none

FloatMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class FeatureMatrix:
    names: list[str]
    raw: FloatMatrix  # (entities, features), before normalisation
    active: npt.NDArray[np.bool_]  # entities with a pair before the cut-off (they set the statistics)
    normalisation: FeatureNormalisation

    @property
    def normalised(self) -> FloatMatrix:
        return self.normalisation.apply(self.raw)


@dataclass(frozen=True)
class Features:
    users: FeatureMatrix
    movies: FeatureMatrix
    as_of: int  # epoch seconds, exclusive
    cold_movie: list[float]  # raw features of a movie with no pairs, no genres and no year


def _normalisation(names: list[str], raw: FloatMatrix, active: npt.NDArray[np.bool_]) -> FeatureNormalisation:
    rows = raw[active] if active.any() else raw
    mean = rows.mean(axis=0, dtype=np.float64) if len(rows) else np.zeros(len(names))
    std = rows.std(axis=0, dtype=np.float64) if len(rows) else np.ones(len(names))
    std = np.where(std < 1e-6, 1.0, std)
    return FeatureNormalisation(names, [float(v) for v in mean], [float(v) for v in std])


def genre_vocabulary(movies: Movies) -> list[str]:
    return sorted(
        {genre for genres in movies.genres for genre in genres if genre and genre != "(no genres listed)"}
    )


def _genre_matrix(movies: Movies, vocabulary: list[str]) -> sp.csr_matrix:
    column = {genre: j for j, genre in enumerate(vocabulary)}
    rows: list[int] = []
    cols: list[int] = []
    for i, genres in enumerate(movies.genres):
        for genre in genres:
            if (j := column.get(genre)) is not None:
                rows.append(i)
                cols.append(j)
    data = np.ones(len(rows), dtype=np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(len(movies), len(vocabulary)))


def _window_counts(
    ids: npt.NDArray[np.int32], age_days: npt.NDArray[np.float64], n: int
) -> list[FloatMatrix]:
    counts = [np.bincount(ids[age_days < days], minlength=n) for days in WINDOWS_DAYS]
    counts.append(np.bincount(ids, minlength=n))
    return [np.log1p(c).astype(np.float32) for c in counts]


@dataclass(frozen=True)
class _Before:
    """The pairs before the cut-off and what both feature tables derive from them."""

    pairs: Positives
    age_days: npt.NDArray[np.float64]
    rated: npt.NDArray[np.bool_]
    global_mean: float
    vocabulary: list[str]
    genres: sp.csr_matrix


def _age_range(
    ids: npt.NDArray[np.int32], age_days: npt.NDArray[np.float64], n: int, never: float = NEVER_DAYS
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per entity, days since its latest and since its earliest pair (``never`` without any)."""
    last = np.full(n, np.inf)
    np.minimum.at(last, ids, age_days)
    first = np.full(n, -np.inf)
    np.maximum.at(first, ids, age_days)
    seen = np.isfinite(last)
    return (
        np.where(seen, np.minimum(last, NEVER_DAYS), never),
        np.where(seen, np.minimum(first, NEVER_DAYS), never),
    )


def compute_features(positives: Positives, users: Users, movies: Movies, as_of: int) -> Features:
    """Features from the pairs before ``as_of``; ``users``/``movies`` rows match the pair indexes."""
    pairs = positives.take(positives.timestamp < as_of)
    rated = ~np.isnan(pairs.rating)
    vocabulary = genre_vocabulary(movies)
    before = _Before(
        pairs,
        (as_of - pairs.timestamp) / DAY,
        rated,
        float(pairs.rating[rated].mean()) if rated.any() else 0.0,
        vocabulary,
        _genre_matrix(movies, vocabulary),
    )
    movie_matrix, cold = _movie_features(before, movies)
    return Features(_user_features(before, users, len(movies)), movie_matrix, as_of, cold)


def _user_features(before: _Before, users: Users, n_movies: int) -> FeatureMatrix:
    pairs, n_users = before.pairs, len(users)
    names = [f"activity_{d}d" for d in WINDOWS_DAYS] + ["activity_all", "days_since_last"]
    columns = _window_counts(pairs.user, before.age_days, n_users)
    last, first = _age_range(pairs.user, before.age_days, n_users)
    columns.append(np.log1p(last).astype(np.float32))
    names += ["years_since_last", "years_since_first", "mean_rating"]
    columns += [(last / 365.0).astype(np.float32), (first / 365.0).astype(np.float32)]
    rated = before.rated
    n_rated = np.bincount(pairs.user[rated], minlength=n_users)
    sum_rated = np.bincount(pairs.user[rated], weights=pairs.rating[rated], minlength=n_users)
    mean = np.where(n_rated > 0, sum_rated / np.maximum(n_rated, 1), before.global_mean)
    columns.append(mean.astype(np.float32))
    if before.vocabulary:
        ones = np.ones(len(pairs), dtype=np.float32)
        interactions = sp.csr_matrix((ones, (pairs.user, pairs.movie)), shape=(n_users, n_movies))
        affinity = np.asarray((interactions @ before.genres).todense(), dtype=np.float32)
        affinity /= np.maximum(np.bincount(pairs.user, minlength=n_users), 1)[:, None].astype(np.float32)
        names += [f"genre:{g}" for g in before.vocabulary]
        columns += list(affinity.T)
    for prefix, values, limit in (("region", users.region, MAX_REGIONS), ("gender", users.gender, 4)):
        array = np.asarray(values)
        for value in _top_values(values, limit):
            names.append(f"{prefix}:{value}")
            columns.append((array == value).astype(np.float32))
    if len(users.age) and bool((users.age > 0).any()):
        known = users.age > 0
        names += ["age", "age_unknown"]
        columns += [
            np.where(known, users.age, np.median(users.age[known])).astype(np.float32),
            (~known).astype(np.float32),
        ]
    raw = np.stack(columns, axis=1).astype(np.float32)
    active = np.bincount(pairs.user, minlength=n_users) > 0
    return FeatureMatrix(names, raw, active, _normalisation(names, raw, active))


def _movie_features(before: _Before, movies: Movies) -> tuple[FeatureMatrix, list[float]]:
    pairs, n_movies = before.pairs, len(movies)
    names = [f"genre:{g}" for g in before.vocabulary]
    columns = list(np.asarray(before.genres.todense(), dtype=np.float32).T) if before.vocabulary else []
    known_year = movies.year > 0
    fill_year = float(np.median(movies.year[known_year])) if known_year.any() else 0.0
    names += ["year", "year_unknown"]
    columns += [
        np.where(known_year, movies.year, fill_year).astype(np.float32),
        (~known_year).astype(np.float32),
    ]
    names += [f"popularity_{d}d" for d in WINDOWS_DAYS] + ["popularity_all", "days_since_first"]
    columns += _window_counts(pairs.movie, before.age_days, n_movies)
    last, first = _age_range(pairs.movie, before.age_days, n_movies, never=0.0)
    columns.append(np.log1p(first).astype(np.float32))
    # Linear ages too: with a user's, they say whether the movie existed yet when the user was active.
    names += ["years_since_first", "years_since_last", "mean_rating"]
    columns += [(first / 365.0).astype(np.float32), (last / 365.0).astype(np.float32)]
    rated = before.rated
    m_rated = np.bincount(pairs.movie[rated], minlength=n_movies)
    m_sum = np.bincount(pairs.movie[rated], weights=pairs.rating[rated], minlength=n_movies)
    shrunk = (m_sum + RATING_PRIOR * before.global_mean) / (m_rated + RATING_PRIOR)
    columns.append(shrunk.astype(np.float32))
    raw = np.stack(columns, axis=1).astype(np.float32)
    active = np.bincount(pairs.movie, minlength=n_movies) > 0
    matrix = FeatureMatrix(names, raw, active, _normalisation(names, raw, active))
    cold = dict.fromkeys(names, 0.0) | {
        "year": fill_year,
        "year_unknown": 1.0,
        "mean_rating": before.global_mean,
    }
    return matrix, [cold[name] for name in names]


def _top_values(values: list[str], limit: int) -> list[str]:
    """The most frequent known values (at least two distinct ones, else no column helps)."""
    known = [v for v in values if v != UNKNOWN]
    if not known:
        return []
    unique, counts = np.unique(np.asarray(known), return_counts=True)
    order = np.lexsort((unique, -counts))[:limit]
    top = [str(v) for v in unique[order]]
    return top if len(top) > 1 else []


# ---- the dated snapshot ---------------------------------------------------------------------------------


def to_parquet_bytes(matrix: FeatureMatrix, ids: list[str] | list[int], as_of: int) -> bytes:
    """One parquet table: ``id``, ``as_of`` and one float column per raw feature."""
    columns: dict[str, pa.Array] = {
        "id": pa.array([str(i) for i in ids], pa.string()),
        "as_of": pa.array(np.full(len(ids), as_of, dtype=np.int64)),
    }
    for j, name in enumerate(matrix.names):
        columns[name] = pa.array(matrix.raw[:, j])
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns), buffer, compression="zstd")
    return buffer.getvalue()


def from_parquet_bytes(data: bytes) -> tuple[list[str], list[str], FloatMatrix]:
    """(ids, feature names, raw matrix) back from ``to_parquet_bytes``."""
    table = pq.read_table(io.BytesIO(data))
    names = [n for n in table.column_names if n not in ("id", "as_of")]
    raw = np.stack([table.column(n).to_numpy() for n in names], axis=1).astype(np.float32)
    return [str(v) for v in table.column("id").to_pylist()], names, raw


def snapshot_files(features: Features, users: Users, movies: Movies) -> dict[str, bytes]:
    """The dated, versioned feature snapshot the pipeline stores under the run's prefix."""
    return {
        "users.parquet": to_parquet_bytes(features.users, users.ids, features.as_of),
        "movies.parquet": to_parquet_bytes(features.movies, [int(m) for m in movies.ids], features.as_of),
    }
