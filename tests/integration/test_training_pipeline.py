"""The scheduled job's stages against real MongoDB, Redis and moto: export, publish, and bad inputs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest
import redis

from movierec import keys, segments
from movierec.artifact import ModelArtifact, load
from movierec.config import TrainingSettings
from movierec.events import dump_event
from movierec.ingest.processor import handle_stream_event
from tests.integration.ingest_harness import build_harness
from tests.support import kinesis_event
from training_job.__main__ import main
from training_job.pipeline import EXIT_BAD_INPUT, FitDecision, Pipeline, RunInputs, StageInputError
from training_job.sources.publisher import iter_events
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.publication import PublicationStore

BUCKET = "movierec-test-artifacts"
DATA = SyntheticConfig(seed=3, n_users=60, n_movies=40, n_events=900, n_regions=3)


@pytest.fixture
def settings(mongo_uri: str, mongo_database_name: str, redis_url: str, aws_reset: str) -> TrainingSettings:
    harness = build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)
    payloads = [dump_event(event) for event in iter_events(generate(DATA))]
    for start in range(0, len(payloads), 500):
        response = handle_stream_event(
            kinesis_event(payloads[start : start + 500]), None, harness.service.ingest
        )
        assert response["batchItemFailures"] == []
    return TrainingSettings(
        mongodb_uri=mongo_uri,
        mongodb_database=mongo_database_name,
        redis_url=redis_url,
        artifact_bucket=BUCKET,
    )


def test_export_then_publish_serves_regional_popularity(settings: TrainingSettings, redis_url: str) -> None:
    pipeline = Pipeline(settings, "run-1")

    assert pipeline.run("export", None, popularity_only=True, budget_seconds=1) == 0
    assert pipeline.run("publish", None, popularity_only=True, budget_seconds=1) == 0

    store = PublicationStore(redis.Redis.from_url(redis_url))
    version = store.current_version()
    assert version is not None
    manifest = store.manifest(version)
    assert manifest is not None
    regions = [s for s in manifest.segments if s.startswith("region=")]
    assert len(regions) == 3
    assert keys.GLOBAL_SEGMENT in manifest.segments
    assert manifest.model_version is None
    # A popularity-only run chooses the segment definition and trending weight on validation itself.
    assert manifest.segment_attribute in segments.CANDIDATES
    assert 0.0 <= manifest.trending_weight <= 1.0
    keys_listed = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert {"runs/run-1/dataset.npz", "runs/run-1/export.json", "snapshots/popularity.json"} <= set(
        keys_listed
    )


def test_export_reads_the_sign_up_attributes_segments_are_built_from(settings: TrainingSettings) -> None:
    pipeline = Pipeline(settings, "run-2")
    assert pipeline.run("export", None, popularity_only=True, budget_seconds=1) == 0

    users = pipeline.load_inputs().dataset.users
    source = generate(DATA)
    first = np.full(len(source.users), source.interactions.timestamp.min())
    np.minimum.at(first, source.interactions.user, source.interactions.timestamp)  # already the minimum
    signed_up = {
        u: datetime.fromtimestamp(int(t), UTC).year for u, t in zip(source.users.ids, first, strict=True)
    }
    # The publisher signs users up with birth_year = sign-up year - age; export turns that back into an
    # age as of the cut-off year (now, without a cut-off): the age serving computes from it this year.
    ages = dict(zip(users.ids, users.age.tolist(), strict=True))
    this_year = datetime.now(UTC).year
    for user_id, age in zip(source.users.ids, source.users.age.tolist(), strict=True):
        assert ages[user_id] == age + this_year - signed_up[user_id]
    countries = dict(zip(users.ids, users.country, strict=True))
    regions = dict(zip(users.ids, users.region, strict=True))
    assert all((countries[u] == "US") == regions[u].startswith("us-") for u in source.users.ids)


def test_a_stage_without_its_input_is_a_clear_error(settings: TrainingSettings) -> None:
    with pytest.raises(StageInputError, match="run --stage export"):
        Pipeline(settings, "never-exported").run("publish", None, popularity_only=True, budget_seconds=1)


def test_missing_configuration_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    for name in ("MONGODB_URI", "MONGODB_SECRET_ARN", "ARTIFACT_BUCKET"):
        monkeypatch.delenv(name, raising=False)

    assert main(["train", "--stage", "export"]) == EXIT_BAD_INPUT
    assert "bad configuration" in capsys.readouterr().err


def small_model(inputs: RunInputs) -> tuple[FitDecision, ModelArtifact]:
    from training_job.fit import FitConfig, fit
    from training_job.model import NeuMFParams

    params = NeuMFParams(factors=4, mlp_layers=(8, 4), batch_size=1024, learning_rate=0.01)
    config = FitConfig(
        budget_seconds=1.0, params=params, max_epochs=2, max_trials=1, progress=False, threads=1
    )
    result = fit(inputs.dataset, config)
    decision = FitDecision(True, "test", result.model_version, "s3://elsewhere/model.npz", result.metrics)
    return decision, load(result.artifact_bytes)


def test_a_challenger_run_pins_its_model_beside_the_champion(
    settings: TrainingSettings, redis_url: str
) -> None:
    champion_run = Pipeline(settings, "run-1")
    assert champion_run.run("export", None, popularity_only=True, budget_seconds=1) == 0
    inputs = champion_run.load_inputs()
    decision, artifact = small_model(inputs)
    store = PublicationStore(redis.Redis.from_url(redis_url))

    first = Pipeline(settings.model_copy(update={"challenger_variant": "challenger"}), "run-1")
    first.publish(inputs, decision, artifact)  # nothing published yet: it becomes the champion
    champion = store.current_version()
    assert champion is not None
    assert store.pinned() == {}

    first.publish(inputs, decision, artifact)
    pinned = store.pinned()
    assert store.current_version() == champion
    assert set(pinned) == {"challenger"}
    assert pinned["challenger"] != champion
    manifest = store.manifest(pinned["challenger"])
    assert manifest is not None
    assert manifest.model_version == decision.model_version


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--challenger", "not a name"], "challenger_variant"),
        (["--challenger", "b", "--popularity-only"], "cannot publish a challenger"),
    ],
)
def test_a_bad_challenger_request_exits_2(
    settings: TrainingSettings,
    mongo_uri: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("ARTIFACT_BUCKET", settings.artifact_bucket)
    assert main(["train", "--stage", "publish", *argv]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
