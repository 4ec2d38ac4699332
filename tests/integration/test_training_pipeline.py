"""The scheduled job's stages against real MongoDB, Redis and moto: export, publish, and bad inputs."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
import redis

from movierec import keys
from movierec.config import TrainingSettings
from movierec.data.publisher import iter_events
from movierec.data.synthetic import SyntheticConfig, generate
from movierec.events import dump_event
from movierec.ingest.processor import handle_stream_event
from movierec.stores.publication import PublicationStore
from tests.integration.ingest_harness import build_harness
from tests.support import kinesis_event
from training_job.pipeline import EXIT_BAD_INPUT, Pipeline, StageInputError, main

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
    keys_listed = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert {"runs/run-1/dataset.npz", "runs/run-1/export.json", "snapshots/popularity.json"} <= set(
        keys_listed
    )


def test_a_stage_without_its_input_is_a_clear_error(settings: TrainingSettings) -> None:
    with pytest.raises(StageInputError, match="run --stage export"):
        Pipeline(settings, "never-exported").run("publish", None, popularity_only=True, budget_seconds=1)


def test_missing_configuration_exits_2(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    for name in ("MONGODB_URI", "MONGODB_SECRET_ARN", "ARTIFACT_BUCKET"):
        monkeypatch.delenv(name, raising=False)

    assert main(["--stage", "export"]) == EXIT_BAD_INPUT
    assert "bad configuration" in capsys.readouterr().err
