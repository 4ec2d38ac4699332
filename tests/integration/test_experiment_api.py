"""The served-list record of each answer and the A/B test, through the local runner's Lambda host:
records land in the bucket as Firehose would deliver them; a challenger version serves its variant;
a bad experiment configuration leaves the champion serving."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest
import redis

from infra.local.bootstrap import bootstrap
from infra.local.runner import LocalApp
from infra.local.template import DEFAULT_TEMPLATE
from movierec import keys
from movierec.experiments import EXPERIMENT_FLAG
from movierec.publication import Item, MovieInfo
from movierec.stores.blobs import BlobStore
from movierec.stores.experiments import EXPERIMENTS_KEY
from tests.integration.test_recommend_api import sample, with_user
from training_job.attribution_stage import served_lists
from training_job.publishing import publish
from training_job.stores.publication import PublicationStore

CATALOGUE = {1: MovieInfo("Alien", ("Horror",), 1979), 2: MovieInfo("Heat", ("Crime",), 1995)}
POPULAR = {
    keys.GLOBAL_SEGMENT: [Item(1, 0.6, "Alien", ("Horror",), 1979), Item(2, 0.4, "Heat", ("Crime",), 1995)]
}


@pytest.fixture
def stack(redis_client: redis.Redis, redis_url: str, aws_reset: str) -> tuple[LocalApp, BlobStore, str, str]:
    bucket = bootstrap(aws_reset, DEFAULT_TEMPLATE).bucket_name
    blobs = BlobStore(bucket, boto3.client("s3"))
    store = PublicationStore(redis_client)
    users = [f"u{i}" for i in range(40)]
    champion = publish(
        store,
        blobs,
        POPULAR,
        iter((u, [Item(2, 0.9, "Heat", ("Crime",), 1995)]) for u in users),
        CATALOGUE,
        data_cutoff=time.time(),
        grace_seconds=60,
    ).version
    challenger = publish(
        store,
        blobs,
        POPULAR,
        iter((u, [Item(1, 0.8, "Alien", ("Horror",), 1979)]) for u in users),
        CATALOGUE,
        data_cutoff=time.time(),
        grace_seconds=60,
        challenger="challenger",
    ).version
    assert store.current_version() == champion
    assert store.pinned() == {"challenger": challenger}
    app = LocalApp(
        DEFAULT_TEMPLATE,
        environ={"REDIS_URL": redis_url, "AWS_ENDPOINT_URL": aws_reset},
        # A generous deadline: on a loaded machine a tier skipped for time would serve popularity instead.
        env_vars={"RecommendFunction": {"EXPERIMENTS_SOURCE": "s3", "DEADLINE_MS": "10000"}},
    )
    return app, blobs, champion, challenger


def set_experiment(blobs: BlobStore, value: Any) -> None:
    document = {EXPERIMENT_FLAG: {"default": value, "boolean_type": False}}
    blobs.put(EXPERIMENTS_KEY, json.dumps(document).encode(), "application/json")


def ask(app: LocalApp, user: str) -> dict[str, Any]:
    response = app.invoke("RecommendFunction", with_user(sample("http-recommendations", k="1"), user))
    assert response["statusCode"] == 200
    body: dict[str, Any] = json.loads(response["body"])
    return body


def test_each_answer_is_recorded_once_with_its_items_and_the_challenger_serves_its_variant(
    stack: tuple[LocalApp, BlobStore, str, str],
) -> None:
    app, blobs, champion, challenger = stack
    experiment = {
        "name": "ab1",
        "control": "champion",
        "holdout": 0.2,
        "variants": [
            {"name": "champion", "weight": 1},
            {"name": "challenger", "weight": 1, "version": challenger},
        ],
    }
    set_experiment(blobs, experiment)
    answers = {f"u{i}": ask(app, f"u{i}") for i in range(40)}
    anonymous = json.loads(app.invoke("RecommendFunction", sample("http-popular", k="2"))["body"])

    app.flush_served_log()
    records = {r.recommendation_id: r for r in served_lists(blobs, time.time() - 600, time.time() + 1)}
    assert len(records) == 41
    for user, body in answers.items():
        record = records[body["recommendation_id"]]
        assert record.user_id == user
        assert record.tier == body["source"] == "personalized"
        assert record.movie_ids == [m["movie_id"] for m in body["items"]]
        assert record.experiment == "ab1"
        assert record.model_version == body["model_version"]
        expected = challenger if record.variant == "challenger" else champion
        assert body["model_version"] == expected
        assert record.movie_ids == ([1] if record.variant == "challenger" else [2])
    assert {r.variant for r in records.values() if r.user_id} == {"holdout", "champion", "challenger"}
    popular = records[anonymous["recommendation_id"]]
    assert (popular.user_id, popular.variant, popular.movie_ids) == (None, None, [1, 2])


@pytest.mark.parametrize(
    "bad",
    [
        {
            "name": "ab1",
            "control": "nobody",
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}],
        },
        "not an experiment",
    ],
)
def test_a_bad_experiment_configuration_is_rejected_and_the_champion_serves(
    stack: tuple[LocalApp, BlobStore, str, str], bad: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app, blobs, champion, _ = stack
    set_experiment(blobs, bad)
    bodies = [ask(app, f"u{i}") for i in range(10)]
    assert {b["model_version"] for b in bodies} == {champion}
    assert {m["movie_id"] for b in bodies for m in b["items"]} == {2}
    assert "experiment configuration rejected; serving the champion" in caplog.text
    app.flush_served_log()
    records = served_lists(blobs, time.time() - 600, time.time() + 1)
    assert {(r.experiment, r.variant) for r in records} == {(None, None)}


def pinned_experiment(variant: str) -> dict[str, Any]:
    return {
        "name": "ab-pinned",
        "control": "champion",
        "variants": [{"name": "champion", "weight": 1}, {"name": variant, "weight": 1, "pinned": True}],
    }


def test_a_pinned_variant_serves_whatever_the_training_job_pinned_under_its_name(
    stack: tuple[LocalApp, BlobStore, str, str],
) -> None:
    app, blobs, champion, challenger = stack
    set_experiment(blobs, pinned_experiment("challenger"))
    bodies = {f"u{i}": ask(app, f"u{i}") for i in range(40)}
    app.flush_served_log()
    records = {r.recommendation_id: r for r in served_lists(blobs, time.time() - 600, time.time() + 1)}
    variants = {records[b["recommendation_id"]].variant: b["model_version"] for b in bodies.values()}
    assert variants == {"champion": champion, "challenger": challenger}


def test_a_pinned_variant_with_nothing_pinned_serves_the_champion_uncounted(
    stack: tuple[LocalApp, BlobStore, str, str],
) -> None:
    app, blobs, champion, _ = stack
    set_experiment(blobs, pinned_experiment("never-published"))
    bodies = [ask(app, f"u{i}") for i in range(20)]
    assert {b["model_version"] for b in bodies} == {champion}
    app.flush_served_log()
    records = served_lists(blobs, time.time() - 600, time.time() + 1)
    variants = {r.variant for r in records}
    assert "never-published" not in variants
    assert "champion" in variants
