"""``python -m training_job features``: the feature pipeline stage, and ``features backfill``.

The stage (after ``export`` in the state machine) computes every view's features from the run's
exported events as of the cut-off, writes them as dated Parquet, ``apply``s the repository (entities
and versioned views; a no-op when nothing changed) and materializes incrementally into the online
store: only the rows since the previous materialization's end. Re-running it is idempotent: the same
cut-off's Parquet file is replaced by identical rows, and a materialization up to an instant already
materialized writes nothing new (Feast's Redis store keeps a row's newest event time).

``backfill --start D1 --end D2`` recomputes the daily partitions as of each day's 00:00 UTC in
[D1, D2] (a definition fix, a lost partition) and applies; it leaves the online store alone unless
``--materialize`` asks (the online store holds the newest rows, which a backfill of the past does not
change).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from feast import FeatureStore

from movierec.data.dataset import Dataset
from movierec.feature_views import VIEWS, ViewSpec
from training_job.feature_repo.compute import clear_dates, compute_tables, write_tables
from training_job.feature_repo.definitions import all_objects
from training_job.feature_repo.settings import FeatureStoreSettings
from training_job.feature_repo.store import open_store


@dataclass
class FeatureRun:
    as_of: list[str]
    files: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    materialized_to: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "files": self.files,
            "rows": self.rows,
            "materialized_to": self.materialized_to,
            "seconds": self.seconds,
        }


def s3_endpoint(settings: FeatureStoreSettings) -> str | None:
    return settings.aws_endpoint_url if settings.offline_root.startswith("s3://") else None


def apply(store: FeatureStore, settings: FeatureStoreSettings, views: tuple[ViewSpec, ...] = VIEWS) -> None:
    store.apply(list[Any](all_objects(settings.offline_root, s3_endpoint(settings), views)))


def aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def write_features(
    settings: FeatureStoreSettings, dataset: Dataset, as_of: datetime, run: FeatureRun
) -> None:
    tick = time.perf_counter()
    tables = compute_tables(dataset, as_of)
    run.files += write_tables(tables, as_of, settings.offline_root, s3_endpoint(settings))
    for name, table in tables.items():
        run.rows[name] = run.rows.get(name, 0) + table.num_rows
    run.seconds["compute_and_write"] = run.seconds.get("compute_and_write", 0.0) + time.perf_counter() - tick


def run_stage(
    settings: FeatureStoreSettings, dataset: Dataset, as_of: datetime, store: FeatureStore | None = None
) -> FeatureRun:
    """Features as of ``as_of`` -> dated Parquet -> apply -> materialize_incremental(as_of)."""
    as_of = aware(as_of)
    run = FeatureRun([as_of.isoformat()])
    write_features(settings, dataset, as_of, run)
    store = store or open_store(settings)
    tick = time.perf_counter()
    apply(store, settings)
    run.seconds["apply"] = time.perf_counter() - tick
    tick = time.perf_counter()
    materialize(store, as_of)
    run.seconds["materialize"] = time.perf_counter() - tick
    run.materialized_to = as_of.isoformat()
    return run


def materialize(store: FeatureStore, end: datetime, views: tuple[ViewSpec, ...] = VIEWS) -> None:
    """Incrementally up to ``end``. A view never materialized starts at ``end - ttl`` (Feast's own
    first start is ``now - ttl``, which misses data dated in the past, such as a MovieLens release)."""
    fresh = [v for v in views if not store.get_feature_view(v.name).materialization_intervals]
    for spec in fresh:
        store.materialize(end - timedelta(days=spec.ttl_days), end, feature_views=[spec.name])
    rest = [v.name for v in views if v not in fresh]
    if rest:
        store.materialize_incremental(end_date=end, feature_views=rest)


def backfill(
    settings: FeatureStoreSettings,
    dataset: Dataset,
    start: date,
    end: date,
    then_materialize: bool = False,
    store: FeatureStore | None = None,
) -> FeatureRun:
    """Recomputes the daily partitions as of 00:00 UTC of each day from ``start`` to ``end``."""
    if end < start:
        raise ValueError(f"backfill: --end {end} is before --start {start}")
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    run = FeatureRun([datetime(d.year, d.month, d.day, tzinfo=UTC).isoformat() for d in days])
    for spec in VIEWS:
        clear_dates(spec, [d.isoformat() for d in days], settings.offline_root, s3_endpoint(settings))
    for day in days:
        write_features(settings, dataset, datetime(day.year, day.month, day.day, tzinfo=UTC), run)
    store = store or open_store(settings)
    apply(store, settings)
    if then_materialize:
        last = datetime(end.year, end.month, end.day, tzinfo=UTC)
        materialize(store, last)
        run.materialized_to = last.isoformat()
    return run
