"""The Feast feature store end to end on a real Redis and local Parquet: point-in-time joins on a
constructed case with known answers, incremental and idempotent materialization, versioned views that
leave an old training set reproducible, and the layer's thin online reader equal to
``FeatureStore.get_online_features``."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from math import log1p
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]  # no stubs in the venv
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from movierec.data.dataset import Dataset, InteractionKind, Interactions, Movies, Users
from movierec.feature_views import (
    MOVIE_METADATA_V1,
    MOVIE_STATS_V1,
    MOVIE_VIEWS,
    USER_ACTIVITY_V1,
    USER_TASTE_V1,
    USER_VIEWS,
    VIEWS,
    FeatureSpec,
    Kind,
)
from movierec.stores.online_features import OnlineFeatureReader

feast = pytest.importorskip("feast", reason="the features extra (pip install -e '.[features]')")

from feast import FeatureStore  # noqa: E402

from training_job.feature_repo.definitions import TIMESTAMP  # noqa: E402
from training_job.feature_repo.settings import FeatureStoreSettings  # noqa: E402
from training_job.feature_repo.stage import apply, backfill, run_stage  # noqa: E402
from training_job.feature_repo.store import open_store  # noqa: E402
from training_job.feature_repo.training_set import training_frame  # noqa: E402


def _at(day: int, hour: int = 0) -> datetime:
    return datetime(2025, 1, day, hour, tzinfo=UTC)


def _dataset() -> Dataset:
    """u1 watches movie 10 on Jan 1, 20 on Jan 2 and 30 on Jan 3 (10:00 each); u2 rates 10 (4.0) on Jan 2."""
    events = [
        ("u1", 10, 1.0, _at(1, 10), InteractionKind.WATCH),
        ("u1", 20, 1.0, _at(2, 10), InteractionKind.WATCH),
        ("u2", 10, 4.0, _at(2, 11), InteractionKind.RATING),
        ("u1", 30, 1.0, _at(3, 10), InteractionKind.WATCH),
    ]
    users, movies = ["u1", "u2", "u3"], [10, 20, 30]
    return Dataset(
        "constructed",
        Users(users, ["eu", "us", "eu"]),
        Movies(
            np.array(movies, dtype=np.int64),
            ["Ten", "Twenty", "Thirty"],
            [("Drama",), ("Comedy", "Drama"), ("Comedy",)],
            np.array([1990, 2000, 0], dtype=np.int16),
        ),
        Interactions(
            np.array([users.index(e[0]) for e in events], dtype=np.int32),
            np.array([movies.index(e[1]) for e in events], dtype=np.int32),
            np.array([e[2] for e in events], dtype=np.float32),
            np.array([int(e[3].timestamp()) for e in events], dtype=np.int64),
            np.array([e[4] for e in events], dtype=np.int8),
        ),
    )


@pytest.fixture
def settings(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> FeatureStoreSettings:
    return FeatureStoreSettings(
        redis_url=redis_url,
        feature_offline_uri=str(tmp_path / "offline"),
        feature_registry_uri=str(tmp_path / "registry.pb"),
    )


@pytest.fixture
def store(settings: FeatureStoreSettings, tmp_path: Path) -> FeatureStore:
    return open_store(settings, tmp_path)


def _dump(client: redis.Redis) -> dict[object, object]:
    return {key: client.hgetall(key) for key in client.scan_iter()}


def test_a_feature_row_dated_after_an_example_is_never_joined(
    settings: FeatureStoreSettings, store: FeatureStore
) -> None:
    backfill(settings, _dataset(), date(2025, 1, 2), date(2025, 1, 4), store=store)
    examples = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u1", "u2"],
            TIMESTAMP: [_at(1, 10), _at(2, 10), _at(3, 0), _at(3, 10), _at(2, 11)],
            "label": [1, 1, 0, 1, 1],
        }
    )
    frame = training_frame(store, examples, [USER_ACTIVITY_V1])
    # Rows are as of 00:00 of Jan 2, 3, 4, from the events before: u1 has 1, 2 and 3 pairs.
    # Jan 1 10:00 precedes every row: the documented default. Jan 2 10:00 (the movie-20 watch itself)
    # sees the Jan 2 row (one pair), never Jan 3's, which counts that watch.
    assert frame["activity_all"].tolist() == pytest.approx([0.0, log1p(1), log1p(2), log1p(2), 0.0])
    assert frame["label"].tolist() == [1, 1, 0, 1, 1]
    assert frame["user_id"].tolist() == examples["user_id"].tolist()
    # u2's rating on Jan 2 11:00 is in the Jan 3 row only: at Jan 2 11:00 u2 has no row yet.
    assert frame["mean_rating"].iloc[4] == USER_ACTIVITY_V1.defaults["mean_rating"]
    later_example = pd.DataFrame({"user_id": ["u2"], TIMESTAMP: [_at(3, 12)]})
    later = training_frame(store, later_example, [USER_ACTIVITY_V1])
    assert later["mean_rating"].tolist() == [4.0]


def test_materialization_is_incremental_and_idempotent(
    settings: FeatureStoreSettings, store: FeatureStore, redis_client: redis.Redis
) -> None:
    data = _dataset()
    run_stage(settings, data, _at(3), store)
    first = _dump(redis_client)
    assert first
    run_stage(settings, data, _at(3), store)  # the same cut-off again: nothing changes
    assert _dump(redis_client) == first
    files = sorted(Path(settings.offline_root).rglob("*.parquet"))
    assert len(files) == len(VIEWS)  # the cut-off's file was replaced, not added to

    run_stage(settings, data, _at(4), store)
    intervals = store.get_feature_view(USER_ACTIVITY_V1.name).materialization_intervals
    assert [(start, end) for start, end in intervals][-1][0] == _at(3)  # resumed where the last ended
    reader = OnlineFeatureReader(redis_client)
    row = reader.read([USER_ACTIVITY_V1], ["u1"])[USER_ACTIVITY_V1.name][0]
    assert row.found
    assert row.values["activity_all"] == pytest.approx(log1p(3))


def test_a_new_view_version_leaves_the_old_training_set_reproducible(
    settings: FeatureStoreSettings, store: FeatureStore
) -> None:
    data = _dataset()
    backfill(settings, data, date(2025, 1, 2), date(2025, 1, 4), store=store)
    examples = pd.DataFrame({"user_id": ["u1", "u2", "u1"], TIMESTAMP: [_at(2, 10), _at(3, 5), _at(4, 1)]})
    before = training_frame(store, examples, [USER_ACTIVITY_V1, USER_TASTE_V1])

    # v2 changes a definition (activity counts every event, not pairs): a new view, a new folder.
    v2 = replace(
        USER_ACTIVITY_V1,
        name="user_activity_v2",
        features=(FeatureSpec("events_all", Kind.FLOAT32, 0.0, "log1p(events ever)"),),
    )
    folder = Path(settings.offline_root) / v2.name / "date=2025-01-04"
    folder.mkdir(parents=True)
    table = pa.table(
        {
            "user_id": ["u1", "u2"],
            "events_all": pa.array([9.0, 9.0], pa.float32()),
            TIMESTAMP: pa.array([_at(2), _at(2)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, folder / "asof.parquet")
    apply(store, settings, (*VIEWS, v2))
    store.materialize_incremental(end_date=_at(4))

    again = training_frame(store, examples, [USER_ACTIVITY_V1, USER_TASTE_V1])
    pd.testing.assert_frame_equal(again, before)
    assert training_frame(store, examples, [v2])["events_all"].tolist() == [9.0, 9.0, 9.0]


def test_the_thin_reader_returns_exactly_what_get_online_features_returns(
    settings: FeatureStoreSettings, store: FeatureStore, redis_client: redis.Redis
) -> None:
    run_stage(settings, _dataset(), _at(4), store)
    reader = OnlineFeatureReader(redis_client)
    users = ["u1", "u2", "nobody"]  # u3 never engaged (no row), nobody is unknown
    movies = [10, 20, 30, 999]
    user_rows, movie_rows = reader.read_user_and_movies("u1", movies, USER_VIEWS, MOVIE_VIEWS)
    for specs, key, ids in ((USER_VIEWS, "user_id", [*users, "u3"]), (MOVIE_VIEWS, "movie_id", movies)):
        ours = reader.read(specs, ids)
        for spec in specs:
            theirs = store.get_online_features(
                features=spec.refs(), entity_rows=[{key: i} for i in ids]
            ).to_dict()
            for n, entity_id in enumerate(ids):
                row = ours[spec.name][n]
                found = any(theirs[f.name][n] is not None for f in spec.features)
                assert row.found == found, (spec.name, entity_id)
                for feature in spec.features:
                    expected = theirs[feature.name][n]
                    got = row.values[feature.name]
                    if expected is None:
                        assert got == feature.default  # the documented default for a missing row
                    elif isinstance(expected, list):
                        assert list(got) == expected  # type: ignore[arg-type]
                    else:
                        assert got == expected, (spec.name, entity_id, feature.name)
    assert user_rows[USER_ACTIVITY_V1.name].found
    assert movie_rows[MOVIE_METADATA_V1.name][1].values["genres"] == ("Comedy", "Drama")
    assert not movie_rows[MOVIE_STATS_V1.name][3].found
    assert movie_rows[MOVIE_STATS_V1.name][3].values == MOVIE_STATS_V1.defaults
