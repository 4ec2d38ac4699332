"""The recommend API through the local runner's Lambda host, with the canonical sample events."""

from __future__ import annotations

import copy
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

from infra.local.bootstrap import bootstrap
from infra.local.host import HandlerError
from infra.local.runner import LocalApp
from infra.local.servers import RedisServer
from infra.local.template import DEFAULT_TEMPLATE
from movierec import keys
from movierec.publication import Item, MovieInfo
from movierec.stores.blobs import BlobStore
from training_job.publishing import publish
from training_job.stores.publication import PublicationStore

EVENTS = Path(__file__).resolve().parents[2] / "events"
CATALOGUE = {1: MovieInfo("Alien", ("Horror",), 1979), 2: MovieInfo("Heat", ("Crime",), 1995)}


def sample(name: str, **query: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    if query:
        event = copy.deepcopy(event)
        event["queryStringParameters"] = query
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    return event


def with_user(event: dict[str, Any], user_id: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = user_id
    return event


def with_path(event: dict[str, Any], movie_id: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["pathParameters"] = {"movie_id": movie_id}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/movies/{movie_id}/similar"
    return event


@pytest.fixture
def api(redis_client: redis.Redis, redis_url: str, aws_reset: str) -> LocalApp:
    resources = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    bucket = resources.bucket_name
    lists = {
        keys.GLOBAL_SEGMENT: [
            Item(1, 0.6, "Alien", ("Horror",), 1979),
            Item(2, 0.4, "Heat", ("Crime",), 1995),
        ]
    }
    personal = {
        "42": [Item(2, 0.9, "Heat", ("Crime",), 1995)],
        "7": [Item(1, 0.8, "Alien", ("Horror",), 1979)],
    }
    publish(
        PublicationStore(redis_client),
        BlobStore(bucket, boto3.client("s3")),
        lists,
        iter(personal.items()),
        CATALOGUE,
        data_cutoff=time.time(),
        grace_seconds=60,
    )
    return LocalApp(DEFAULT_TEMPLATE, environ={"REDIS_URL": redis_url, "AWS_ENDPOINT_URL": aws_reset})


def call(api: LocalApp, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = api.invoke("RecommendFunction", event)
    return int(response["statusCode"]), json.loads(response["body"])


def test_a_signed_in_user_gets_their_own_list(api: LocalApp) -> None:
    status, body = call(api, with_user(sample("http-recommendations", k="1"), "42"))

    assert status == 200
    assert body["source"] == "personalized"
    assert [m["movie_id"] for m in body["items"]] == [2]
    assert body["items"][0] == {
        "movie_id": 2,
        "title": "Heat",
        "genres": ["Crime"],
        "year": 1995,
        "score": 0.9,
    }
    assert body["recommendation_id"]
    assert body["model_version"]


def test_one_user_cannot_read_another_users_list(api: LocalApp) -> None:
    """The user is the token's subject; a user id smuggled into the query changes nothing."""
    event = with_user(sample("http-recommendations", k="1", user_id="7", sub="7"), "42")

    status, body = call(api, event)

    assert status == 200
    assert [m["movie_id"] for m in body["items"]] == [2]


def test_no_identity_is_401_as_the_jwt_authorizer_answers_it(api: LocalApp) -> None:
    """A token without a subject gets what API Gateway's JWT authorizer sends for a bad token."""
    response = api.invoke("RecommendFunction", sample("http-recommendations-anonymous"))

    assert response["statusCode"] == 401
    assert json.loads(response["body"]) == {"message": "Unauthorized"}
    assert response["headers"]["www-authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ({"k": "0"}, "invalid_request"),
        ({"k": "101"}, "invalid_request"),
        ({"k": "ten"}, "invalid_request"),
        ({"genre": "<script>"}, "invalid_request"),
        ({"genre": "Polka"}, "unknown_genre"),
    ],
)
def test_bad_parameters_are_400_with_a_clear_error(api: LocalApp, query: dict[str, str], error: str) -> None:
    status, body = call(api, with_user(sample("http-recommendations", **query), "42"))

    assert status == 400
    assert body["error"] == error
    assert body["message"]


def test_popular_is_public(api: LocalApp) -> None:
    status, body = call(api, sample("http-popular", k="2"))

    assert status == 200
    assert body["source"] == "global_popular"
    assert [m["movie_id"] for m in body["items"]] == [1, 2]


def test_similar_movies_of_an_unknown_movie_is_404_and_a_malformed_id_400(api: LocalApp) -> None:
    assert call(api, with_path(sample("http-similar"), "999"))[0] == 404
    assert call(api, with_path(sample("http-similar"), "abc"))[0] == 400


def test_health_reports_the_published_version(api: LocalApp) -> None:
    status, body = call(api, sample("http-health"))

    assert status == 200
    assert body["status"] == "ok"
    assert body["published_version"]


def emitted_metrics(output: str) -> list[dict[str, Any]]:
    """The EMF documents a request printed: to stdout in Lambda, to the local host's log (stderr) here."""
    documents = [json.loads(line) for line in output.splitlines() if line.startswith('{"_aws"')]
    return [d for d in documents if d["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MovieRec"]


def test_each_request_records_its_tier_and_each_fallback_with_its_reason(
    api: LocalApp, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    call(api, with_user(sample("http-recommendations", k="1"), "42"))
    hit = emitted_metrics(capsys.readouterr().err)

    call(api, with_user(sample("http-recommendations", k="1"), "nobody"))
    fallback = emitted_metrics(capsys.readouterr().err)

    # One latency sample per request: its count is the tier's request count on the dashboards.
    (served,) = [d for d in hit if "TierLatencyMs" in d]
    assert served["tier"] == "personalized"
    assert len(served["TierLatencyMs"]) == 1
    assert served["TierLatencyMs"][0] > 0
    assert not [d for d in hit if "FallbackReason" in d]
    (request,) = [d for d in fallback if "TierLatencyMs" in d]
    assert request["tier"] == "global_popular"
    assert len(request["TierLatencyMs"]) == 1
    reasons = {(d["from_tier"], d["reason"]) for d in fallback if "FallbackReason" in d}
    assert reasons == {("personalized", "miss"), ("online", "no model"), ("regional_popular", "no segment")}
    assert sorted(request["fallbacks"]) == sorted(f"{tier}: {reason}" for tier, reason in reasons)
    assert set(request["tier_ms"]) >= {"personalized", "global_popular"}


def test_an_answer_from_the_snapshot_records_its_tier_and_why(
    disposable_redis: RedisServer, aws_reset: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bootstrap(aws_reset, DEFAULT_TEMPLATE)
    api = LocalApp(
        DEFAULT_TEMPLATE, environ={"REDIS_URL": disposable_redis.url, "AWS_ENDPOINT_URL": aws_reset}
    )
    disposable_redis.stop()
    capsys.readouterr()

    status, body = call(api, with_user(sample("http-recommendations", k="1"), "42"))

    assert (status, body["degraded"]) == (200, True)
    (request,) = [d for d in emitted_metrics(capsys.readouterr().err) if "TierLatencyMs" in d]
    assert (request["tier"], request["TierLatencyMs"]) == ("snapshot", [0.0])
    assert request["tier_ms"] == {"snapshot": 0.0}
    assert request["fallbacks"] == ["personalized: store unavailable"]


# ---- Redis down or silent: every route answers from a fallback, or 503 with a JSON body; never 500 ----

ROUTES_WITHOUT_REDIS = [
    # (request, status, what the body must say)
    pytest.param(
        lambda: with_user(sample("http-recommendations", k="1"), "42"),
        200,
        {"degraded": True},
        id="recommendations",
    ),
    # from the in-process popularity cache, or from the snapshot: global popularity either way
    pytest.param(lambda: sample("http-popular", k="2"), 200, {"source": "global_popular"}, id="popular"),
    pytest.param(
        lambda: with_path(sample("http-similar"), "1"), 503, {"error": "service_unavailable"}, id="similar"
    ),
    pytest.param(lambda: sample("http-health"), 200, {"status": "degraded"}, id="health"),
]


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers: every command times out."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


def answer_without_500(api: LocalApp, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    try:
        response = api.invoke("RecommendFunction", event)
    except HandlerError as error:  # what API Gateway turns into a 500
        pytest.fail(f"the handler raised (a 500 behind API Gateway): {error.payload}")
    assert response["headers"]["Content-Type"] == "application/json"
    return int(response["statusCode"]), json.loads(response["body"])


@pytest.mark.parametrize(("request_", "status", "says"), ROUTES_WITHOUT_REDIS)
def test_with_redis_down_each_route_falls_back_or_is_503(
    disposable_redis: RedisServer, aws_reset: str, request_: Any, status: int, says: dict[str, Any]
) -> None:
    bootstrap(aws_reset, DEFAULT_TEMPLATE)
    api = LocalApp(
        DEFAULT_TEMPLATE, environ={"REDIS_URL": disposable_redis.url, "AWS_ENDPOINT_URL": aws_reset}
    )
    disposable_redis.stop()

    for _ in range(2):  # the first failure, then the store's fail-fast
        got, body = answer_without_500(api, request_())
        assert got == status
        assert body.items() >= says.items()
        assert body["message"] if got == 503 else body


@pytest.mark.parametrize(("request_", "status", "says"), ROUTES_WITHOUT_REDIS)
def test_when_redis_goes_down_under_a_warm_container_no_route_is_500(
    disposable_redis: RedisServer, aws_reset: str, request_: Any, status: int, says: dict[str, Any]
) -> None:
    """What the container cached (version, manifest, popularity) may still answer; the rest is a 503."""
    resources = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    publish(
        PublicationStore(redis.Redis.from_url(disposable_redis.url)),
        BlobStore(resources.bucket_name, boto3.client("s3")),
        {keys.GLOBAL_SEGMENT: [Item(1, 0.6, "Alien", ("Horror",), 1979)]},
        iter([("42", [Item(1, 0.9, "Alien", ("Horror",), 1979)])]),
        CATALOGUE,
        data_cutoff=time.time(),
        grace_seconds=60,
    )
    api = LocalApp(
        DEFAULT_TEMPLATE, environ={"REDIS_URL": disposable_redis.url, "AWS_ENDPOINT_URL": aws_reset}
    )
    warm, _ = answer_without_500(api, request_())
    disposable_redis.stop()

    for _ in range(2):
        got, body = answer_without_500(api, request_())
        assert got in {warm, status}
        assert body["error"] == "service_unavailable" if got == 503 else body


@pytest.mark.parametrize(("request_", "status", "says"), ROUTES_WITHOUT_REDIS)
def test_with_redis_timing_out_each_route_falls_back_or_is_503(
    silent_redis: str, aws_reset: str, request_: Any, status: int, says: dict[str, Any]
) -> None:
    bootstrap(aws_reset, DEFAULT_TEMPLATE)
    api = LocalApp(DEFAULT_TEMPLATE, environ={"REDIS_URL": silent_redis, "AWS_ENDPOINT_URL": aws_reset})

    got, body = answer_without_500(api, request_())

    assert got == status
    assert body.items() >= says.items()
