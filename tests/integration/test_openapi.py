"""The API keeps the promises of its OpenAPI document, for any input hypothesis can think of."""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from infra.local.runner import LocalApp
from tests.integration.test_recommend_api import api, sample, with_path, with_user  # noqa: F401  (fixture)

DOCUMENT_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"
DOCUMENT: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text())

values = st.one_of(
    st.integers(min_value=-1000, max_value=1000).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=60),
    st.sampled_from(["Horror", "Crime", "Drama", "EU", "us-west", "", "1e3", "10.5"]),
)


def operation(path: str) -> dict[str, Any]:
    return dict(DOCUMENT["paths"][path]["get"])


def assert_documented(path: str, status: int, body: dict[str, Any]) -> None:
    responses = operation(path)["responses"]
    assert str(status) in responses, f"{path} answered {status}, which its document does not list"
    schema_ref = responses[str(status)]["content"]["application/json"]["schema"]
    jsonschema.validate(body, {**schema_ref, "components": DOCUMENT["components"]})


def query_event(name: str, query: dict[str, str]) -> dict[str, Any]:
    event = sample(name)
    event["queryStringParameters"] = query
    event["rawQueryString"] = urllib.parse.urlencode(query)
    return event


def test_the_published_document_is_current(api: LocalApp) -> None:  # noqa: F811
    api.invoke("RecommendFunction", sample("http-health"))  # loads the handler module
    module = api.hosts.get("RecommendFunction").module
    assert module is not None
    assert json.loads(module.openapi_document()) == DOCUMENT, "run `make openapi`"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=values, genre=st.none() | values, region=st.none() | values)
@example(k="2", genre=None, region=None)  # the happy path, every run: 200 must be documented too
@example(k="1", genre="Crime", region="EU")
def test_recommendations_and_popular_answer_as_documented(
    api: LocalApp,  # noqa: F811
    k: str,
    genre: str | None,
    region: str | None,
) -> None:
    query = {"k": k} | ({"genre": genre} if genre is not None else {})
    response = api.invoke("RecommendFunction", with_user(query_event("http-recommendations", query), "42"))
    assert_documented("/v1/recommendations", response["statusCode"], json.loads(response["body"]))

    query |= {"region": region} if region is not None else {}
    response = api.invoke("RecommendFunction", query_event("http-popular", query))
    assert_documented("/v1/popular", response["statusCode"], json.loads(response["body"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(movie_id=values.filter(lambda v: "/" not in v and v.strip() == v and v != ""))
@example(movie_id="1")
def test_similar_answers_as_documented(api: LocalApp, movie_id: str) -> None:  # noqa: F811
    event = with_path(sample("http-similar"), urllib.parse.quote(movie_id, safe=""))
    event["pathParameters"] = {"movie_id": movie_id}
    response = api.invoke("RecommendFunction", event)
    assert_documented("/v1/movies/{movie_id}/similar", response["statusCode"], json.loads(response["body"]))


@pytest.mark.parametrize("path", ["/v1/recommendations", "/v1/movies/{movie_id}/similar"])
def test_private_routes_declare_the_jwt_scheme(path: str) -> None:
    assert operation(path)["security"] == [{"jwt": []}]
