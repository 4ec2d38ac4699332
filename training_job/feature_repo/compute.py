"""The feature tables of a dataset as of a cut-off, one per versioned view.

Each table holds the features computed from the interactions strictly before ``as_of``
(``training_job/features.py``, the same code the models' features come from), stamped
``event_timestamp = as_of``: a training example at time ``t`` joins the newest row with
``event_timestamp <= t``, which saw only events before it. Rows are written as dated Parquet,
``<root>/<view>/date=YYYY-MM-DD/asof-<epoch>.parquet``; recomputing a cut-off replaces its file.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from movierec.data.dataset import Dataset
from movierec.feature_views import (
    MOVIE_METADATA_V1,
    MOVIE_STATS_V1,
    USER_ACTIVITY_V1,
    USER_TASTE_V1,
    VIEWS,
    ViewSpec,
)
from training_job.data import EventWeights, implicit_feedback
from training_job.feature_repo.definitions import TIMESTAMP, view_path
from training_job.features import FeatureMatrix, Features, compute_features

TOP_GENRES = 3


def _columns(matrix: FeatureMatrix, names: list[str], rows: np.ndarray) -> dict[str, pa.Array]:
    index = {name: j for j, name in enumerate(matrix.names)}
    return {name: pa.array(matrix.raw[rows, index[name]], pa.float32()) for name in names}


def _user_activity(dataset: Dataset, features: Features, stamp: pa.Array, rows: np.ndarray) -> pa.Table:
    columns = {"user_id": pa.array([dataset.users.ids[i] for i in rows], pa.string())}
    columns |= _columns(features.users, USER_ACTIVITY_V1.feature_names, rows)
    return pa.table(columns | {TIMESTAMP: stamp})


def _user_taste(dataset: Dataset, features: Features, stamp: pa.Array, rows: np.ndarray) -> pa.Table:
    genre_columns = [j for j, n in enumerate(features.users.names) if n.startswith("genre:")]
    genre_names = [features.users.names[j].removeprefix("genre:") for j in genre_columns]
    affinity = features.users.raw[:, genre_columns] if genre_columns else np.zeros((len(dataset.users), 0))
    top: list[list[str]] = []
    shares: list[list[float]] = []
    for i in rows:
        order = [int(j) for j in np.lexsort((np.arange(len(genre_names)), -affinity[i]))[:TOP_GENRES]]
        kept = [j for j in order if affinity[i, j] > 0]
        top.append([genre_names[j] for j in kept])
        shares.append([float(affinity[i, j]) for j in kept])
    return pa.table(
        {
            "user_id": pa.array([dataset.users.ids[i] for i in rows], pa.string()),
            "top_genres": pa.array(top, pa.list_(pa.string())),
            "top_genre_shares": pa.array(shares, pa.list_(pa.float32())),
            TIMESTAMP: stamp,
        }
    )


def _movie_stats(dataset: Dataset, features: Features, stamp: pa.Array, rows: np.ndarray) -> pa.Table:
    columns = {"movie_id": pa.array(dataset.movies.ids[rows].astype(np.int64))}
    columns |= _columns(features.movies, MOVIE_STATS_V1.feature_names, rows)
    return pa.table(columns | {TIMESTAMP: stamp})


def _movie_metadata(dataset: Dataset, features: Features, stamp: pa.Array, rows: np.ndarray) -> pa.Table:
    movies = dataset.movies
    return pa.table(
        {
            "movie_id": pa.array(movies.ids[rows].astype(np.int64)),
            "title": pa.array([movies.titles[i] for i in rows], pa.string()),
            "genres": pa.array(
                [[g for g in movies.genres[i] if g != "(no genres listed)"] for i in rows],
                pa.list_(pa.string()),
            ),
            "year": pa.array(movies.year[rows].astype(np.float32)),
            TIMESTAMP: stamp,
        }
    )


_Builder = Callable[[Dataset, Features, pa.Array, np.ndarray], pa.Table]
BUILDERS: dict[str, _Builder] = {
    USER_ACTIVITY_V1.name: _user_activity,
    USER_TASTE_V1.name: _user_taste,
    MOVIE_STATS_V1.name: _movie_stats,
    MOVIE_METADATA_V1.name: _movie_metadata,
}
"""How each versioned view is computed. A new version is a new entry; an old one is never edited."""


def compute_tables(
    dataset: Dataset, as_of: datetime, views: tuple[ViewSpec, ...] = VIEWS
) -> dict[str, pa.Table]:
    """One table per view: users with an engagement before ``as_of``; every movie in the catalogue."""
    cutoff = int(as_of.timestamp())
    positives = implicit_feedback(dataset, EventWeights(), cutoff)
    features = compute_features(positives, dataset.users, dataset.movies, cutoff)
    active_users = np.flatnonzero(features.users.active)
    all_movies = np.arange(len(dataset.movies))
    tables: dict[str, pa.Table] = {}
    for spec in views:
        rows = active_users if spec.entity.join_key == "user_id" else all_movies
        stamp = pa.array([as_of.astimezone(UTC)] * len(rows), pa.timestamp("us", tz="UTC"))
        tables[spec.name] = BUILDERS[spec.name](dataset, features, stamp, rows)
    return tables


def _filesystem(root: str, s3_endpoint: str | None) -> tuple[pafs.FileSystem, str]:
    if root.startswith("s3://"):
        bucket_and_prefix = root.removeprefix("s3://")
        options = {"endpoint_override": s3_endpoint} if s3_endpoint else {}
        return pafs.S3FileSystem(**options), bucket_and_prefix
    return pafs.LocalFileSystem(), root


def partition_file(spec: ViewSpec, as_of: datetime) -> str:
    day = as_of.astimezone(UTC)
    return f"{spec.name}/date={day:%Y-%m-%d}/asof-{int(day.timestamp())}.parquet"


def write_tables(
    tables: dict[str, pa.Table], as_of: datetime, root: str, s3_endpoint: str | None = None
) -> list[str]:
    """Writes each view's table to its dated partition (replacing the same cut-off's file)."""
    filesystem, base = _filesystem(root, s3_endpoint)
    written: list[str] = []
    specs = {spec.name: spec for spec in VIEWS}
    for name, table in tables.items():
        relative = partition_file(specs[name], as_of)
        target = f"{base.rstrip('/')}/{relative}"
        filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
        pq.write_table(table, target, filesystem=filesystem, compression="zstd")
        written.append(f"{root.rstrip('/')}/{relative}")
    return written


def clear_dates(spec: ViewSpec, days: list[str], root: str, s3_endpoint: str | None = None) -> None:
    """Removes the given days' partitions of a view (a backfill recomputes them whole)."""
    filesystem, base = _filesystem(root, s3_endpoint)
    for day in days:
        folder = f"{view_path(base, spec)}/date={day}"
        if filesystem.get_file_info(folder).type == pafs.FileType.Directory:
            filesystem.delete_dir(folder)
