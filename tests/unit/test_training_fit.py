"""``fit`` end to end on a tiny synthetic dataset: everything the pipeline needs comes back."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pyarrow.parquet as pq
import pytest

from movierec import artifact
from training_job.fit import FitConfig, FitResult, fit
from training_job.model import NeuMFParams
from training_job.sources.synthetic import SyntheticConfig, generate

DATA = SyntheticConfig(n_users=150, n_movies=300, n_events=5_000, seed=21)
PARAMS = NeuMFParams(factors=8, mlp_layers=(16, 8, 4), batch_size=2048, learning_rate=0.01)


@pytest.fixture(scope="module")
def result() -> FitResult:
    data = generate(DATA)
    cutoff = datetime.fromtimestamp(int(np.quantile(data.interactions.timestamp, 0.95)), UTC)
    config = FitConfig(
        budget_seconds=1.0, params=PARAMS, max_epochs=3, max_trials=1, progress=False, threads=1
    )
    return fit(data, config, cutoff=cutoff)


def test_the_artifact_loads_and_carries_its_metadata(result: FitResult) -> None:
    model = artifact.load(result.artifact_bytes)
    meta = model.metadata
    assert meta.model_version == result.model_version
    assert meta.data_cutoff == result.data_cutoff
    assert meta.metrics == result.metrics
    assert meta.params["neumf"]["factors"] == PARAMS.factors
    assert meta.code_version.startswith("movierec ")
    assert len(meta.movie_ids) == DATA.n_movies  # every catalogue movie, cold ones included
    assert model.n_users <= DATA.n_users
    scores = model.score(0, np.arange(model.n_movies))
    assert np.isfinite(scores).all()


def test_metrics_baselines_and_the_gate(result: FitResult) -> None:
    for key in ("hr@10", "ndcg@10", "full_hr@10", "full_ndcg@10", "coverage@10", "cold_movies/n_cases"):
        assert key in result.metrics
    assert set(result.baselines) == {"popularity", "segment_popularity", "als", "ease"}
    for row in result.baselines.values():  # the gate's inputs: every baseline on validation too
        assert {"validation_hr@10", "validation_ndcg@10", "hr@10", "ndcg@10"} <= set(row)
    segment = result.baselines["segment_popularity"]
    assert {"shrink", "trending_weight", "lift_hr@10_pct", "lift_ndcg@10_pct"} <= set(segment)
    assert set(result.params) == {"neumf", "als", "segment_popularity", "ease"}
    assert result.params["ease"]["lambda"] > 0
    assert set(result.params["segment_popularity"]) == {"definition", "shrink", "trending_weight"}
    assert result.segments["definition"] == result.params["segment_popularity"]["definition"]
    assert result.segments["definition"] in result.segments["candidates"]
    # The gate: the model against the strongest baseline of each metric, on validation.
    keys = ("validation_hr@10", "validation_ndcg@10")
    beats = all(result.metrics[k] > max(b[k] for b in result.baselines.values()) for k in keys)
    assert result.gate.passed == beats
    assert result.gate.reason.startswith("passed" if beats else "rejected")
    assert "strongest baseline" in result.gate.reason


def test_report_and_feature_snapshot(result: FitResult) -> None:
    html = result.report_files["report.html"].decode()
    assert "Test metrics vs baselines" in html
    assert "Champion (NeuMF against the strongest baseline)" in html
    assert "On test: ndcg@10: " in html
    assert "Segment popularity" in html
    assert "lift HR@10" in html
    assert result.model_version in html
    for name in ("learning_curves.png", "comparison.png", "tuning.png"):
        assert result.report_files[name].startswith(b"\x89PNG")
        assert name in html
    users = pq.read_table(io.BytesIO(result.feature_files["users.parquet"]))
    movies = pq.read_table(io.BytesIO(result.feature_files["movies.parquet"]))
    assert set(users.column("as_of").to_pylist()) == {result.data_cutoff}
    assert movies.num_rows == DATA.n_movies
    assert "popularity_all" in movies.column_names
    assert "activity_all" in users.column_names


def test_ease_above_the_item_cap_is_skipped_with_the_reason() -> None:
    data = generate(DATA)
    config = FitConfig(budget_seconds=1.0, params=PARAMS, max_epochs=1, max_trials=1, progress=False)
    skipped = fit(data, replace(config, threads=1, ease_max_items=10))
    assert "ease" not in skipped.baselines
    assert "above the cap of 10" in skipped.params["ease"]["skipped"]
    assert "ease" not in skipped.gate.reason  # the gate compares with the baselines that ran
    assert "strongest baseline" in skipped.gate.reason
