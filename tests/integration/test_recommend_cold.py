"""A cold recommend container, configured as the template deploys it, with its dependencies down.

Init reads the popularity snapshot (S3 first, else the copy the build bundled into the package) and the
model artifact; the first request with Redis stopped answers from the snapshot, and no route is a 500.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from typing import Any

import boto3
import redis

from infra.local.bootstrap import bootstrap
from infra.local.runner import LocalApp
from infra.local.servers import RedisServer, free_port
from infra.local.template import DEFAULT_TEMPLATE
from movierec import keys
from movierec.publication import Item
from movierec.stores.blobs import BlobStore
from tests.integration.test_recommend_api import CATALOGUE, answer_without_500, sample, with_path, with_user
from training_job.publishing import publish
from training_job.stores.publication import PublicationStore

REPO_ROOT = DEFAULT_TEMPLATE.parent
POPULAR = [Item(2, 0.7, "Heat", ("Crime",), 1995), Item(1, 0.5, "Alien", ("Horror",), 1979)]


def publish_popular(redis_url: str, bucket: str) -> str:
    """A publication as the training job makes it: it writes the snapshot to S3 too."""
    return publish(
        PublicationStore(redis.Redis.from_url(redis_url)),
        BlobStore(bucket, boto3.client("s3")),
        {keys.GLOBAL_SEGMENT: POPULAR},
        iter([("42", [Item(1, 0.9, "Alien", ("Horror",), 1979)])]),
        CATALOGUE,
        data_cutoff=time.time(),
        grace_seconds=60,
    ).version


def first_requests(app: LocalApp) -> dict[str, tuple[int, dict[str, Any]]]:
    """Each route's first answer from the container (the recommendations first: the cold request)."""
    return {
        "recommendations": answer_without_500(app, with_user(sample("http-recommendations", k="2"), "42")),
        "popular": answer_without_500(app, sample("http-popular", k="2")),
        "similar": answer_without_500(app, with_path(sample("http-similar"), "1")),
        "health": answer_without_500(app, sample("http-health")),
    }


def assert_served_from_the_snapshot(answers: dict[str, tuple[int, dict[str, Any]]], version: str) -> None:
    status, body = answers["recommendations"]
    assert (status, body["degraded"], body["source"]) == (200, True, "global_popular")
    assert [m["movie_id"] for m in body["items"]] == [2, 1]
    assert body["model_version"] == version
    status, body = answers["popular"]
    assert (status, [m["movie_id"] for m in body["items"]]) == (200, [2, 1])
    assert answers["similar"][0] == 503
    assert answers["similar"][1]["error"] == "service_unavailable"
    assert answers["health"] == (200, {"status": "degraded", "published_version": None})


def test_a_cold_container_with_redis_stopped_answers_from_the_s3_snapshot_on_its_first_request(
    disposable_redis: RedisServer, aws_reset: str
) -> None:
    resources = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    version = publish_popular(disposable_redis.url, resources.bucket_name)
    disposable_redis.stop()
    app = LocalApp(
        DEFAULT_TEMPLATE, environ={"REDIS_URL": disposable_redis.url, "AWS_ENDPOINT_URL": aws_reset}
    )
    assert app.host("RecommendFunction").environment["POPULARITY_SNAPSHOT_PATH"] == "popularity-snapshot.json"

    assert_served_from_the_snapshot(first_requests(app), version)


def built_package(into: Path) -> Path:
    """What ``sam build`` lays out, as far as the recommend function goes: the template, the function's
    code directory (where the bundle step writes), and the layer. Returns the template's path."""
    shutil.copy(DEFAULT_TEMPLATE, into / DEFAULT_TEMPLATE.name)
    shutil.copytree(REPO_ROOT / "functions" / "recommend", into / "functions" / "recommend")
    for shared in ("layers", "infra", "events"):
        (into / shared).symlink_to(REPO_ROOT / shared, target_is_directory=True)
    (into / "functions" / "ingest").symlink_to(REPO_ROOT / "functions" / "ingest", target_is_directory=True)
    return into / DEFAULT_TEMPLATE.name


def test_with_s3_unreachable_too_the_bundled_snapshot_answers_the_first_request(
    disposable_redis: RedisServer, aws_reset: str, tmp_path: Path
) -> None:
    resources = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    version = publish_popular(disposable_redis.url, resources.bucket_name)
    template = built_package(tmp_path)
    bundled = template.parent / "functions" / "recommend" / "popularity-snapshot.json"
    assert _bundle_script().main(["--bucket", resources.bucket_name, "--out", str(bundled)]) == 0
    disposable_redis.stop()
    unreachable = f"http://127.0.0.1:{free_port()}"  # nothing listens: S3 refuses at init
    app = LocalApp(template, environ={"REDIS_URL": disposable_redis.url, "AWS_ENDPOINT_URL": unreachable})

    assert_served_from_the_snapshot(first_requests(app), version)


def _bundle_script() -> Any:
    """scripts/bundle_snapshot.py, the build's step (a script, not a package: loaded by path)."""
    path = REPO_ROOT / "scripts" / "bundle_snapshot.py"
    spec = importlib.util.spec_from_file_location("bundle_snapshot", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bundle_step_writes_nothing_before_the_first_publication(aws_reset: str, tmp_path: Path) -> None:
    resources = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    out = tmp_path / "popularity-snapshot.json"

    assert _bundle_script().main(["--bucket", resources.bucket_name, "--out", str(out)]) == 0
    assert not out.exists()
