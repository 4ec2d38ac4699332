"""``GET /v1/recommendations`` answers through one path (``movierec.recommend.endpoint``), and answers
exactly as Powertools' validated resolver answers its other routes.

The reference is a resolver built here, as the function builds its own (``app._resolver()``: the same
error handlers), with the route declared from the documented parameter types and the same recommender
behind it: what the route was before it had a path of its own. Every request goes both ways.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from types import ModuleType
from typing import Any, cast

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.utilities.typing import LambdaContext as PowertoolsContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.lambda_context import LambdaContext
from infra.local.runner import LocalApp
from movierec.recommend import api
from tests.integration.test_recommend_api import api as api_app  # noqa: F401  (fixture)
from tests.integration.test_recommend_api import sample, with_user

values = st.one_of(
    st.integers(min_value=-5, max_value=120).map(str),
    st.sampled_from(["Horror", "Crime", "Polka", "", "05", "+5", "5,6", "1e1", " 5", "Horror,Crime", "1_0"]),
    st.text(max_size=12),
)


def reference(module: ModuleType) -> APIGatewayHttpResolver:
    resolver: APIGatewayHttpResolver = module._resolver()

    @resolver.get("/v1/recommendations")
    def get_recommendations(k: api.K = api.DEFAULT_K, genre: api.Genre = None) -> Response[str]:
        claims = resolver.current_event.request_context.authorizer.jwt_claim or {}
        user_id = claims.get("sub")
        if not isinstance(user_id, str) or not user_id:
            headers = {"www-authenticate": api.NO_SUBJECT}
            return Response(
                HTTPStatus.UNAUTHORIZED.value, content_types.APPLICATION_JSON, api.UNAUTHORIZED_JSON, headers
            )
        result = module.recommender.recommend(user_id, k, genre)
        return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, api.recommendation_json(result))

    return resolver


def both_ways(app: LocalApp, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    handled = app.invoke("RecommendFunction", event)
    module = app.hosts.get("RecommendFunction").module
    assert module is not None
    context = LambdaContext(
        function_name="recommend",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:recommend",
        timeout_s=5,
    )
    # infra.local's context mirrors the runtime's attribute for attribute
    resolved: dict[str, Any] = reference(module).resolve(event, cast(PowertoolsContext, context))
    return handled, resolved


def comparable(response: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(response["body"])
    body.pop("recommendation_id", None)  # fresh per request
    return {**response, "body": body}


def query_event(user_id: str | None, query: dict[str, str]) -> dict[str, Any]:
    event = sample("http-recommendations", **query) if query else sample("http-recommendations")
    if not query:
        event.pop("queryStringParameters", None)
        event["rawQueryString"] = ""
    if user_id is None:
        del event["requestContext"]["authorizer"]
        return event
    return with_user(event, user_id)


K_MESSAGE = {
    "low": "k: Input should be greater than or equal to 1",
    "high": "k: Input should be less than or equal to 100",
    "nan": "k: Input should be a valid integer, unable to parse string as an integer",
}
GENRE_MESSAGE = "genre: String should match pattern '^[A-Za-z0-9 '&().-]{1,40}$'"


@pytest.mark.parametrize(
    ("user_id", "query", "status", "body"),
    [
        ("42", {"k": "1"}, 200, {"source": "personalized"}),
        ("42", {}, 200, {"source": "global_popular"}),  # k defaults to 10: the list of one is too short
        ("42", {"k": " 5"}, 200, {}),  # pydantic's lax integers, as the resolver read them
        ("42", {"k": "1_0"}, 200, {}),
        ("42", {"k": "0"}, 400, {"error": "invalid_request", "message": K_MESSAGE["low"]}),
        ("42", {"k": "101"}, 400, {"error": "invalid_request", "message": K_MESSAGE["high"]}),
        ("42", {"k": "5,6"}, 400, {"error": "invalid_request", "message": K_MESSAGE["nan"]}),  # repeated
        ("42", {"genre": "<b>"}, 400, {"error": "invalid_request", "message": GENRE_MESSAGE}),
        ("42", {"k": "0", "genre": ""}, 400, {"message": f"{K_MESSAGE['low']}; {GENRE_MESSAGE}"}),
        ("42", {"genre": "Polka"}, 400, {"error": "unknown_genre", "message": "unknown genre Polka"}),
        (None, {"k": "1"}, 401, {"message": "Unauthorized"}),
        (None, {"genre": "Polka"}, 401, {"message": "Unauthorized"}),  # identity before the genre
        (None, {"k": "0"}, 400, {"error": "invalid_request"}),  # the query before the identity
    ],
)
def test_answers_as_before_and_as_the_resolver(
    api_app: LocalApp,  # noqa: F811
    user_id: str | None,
    query: dict[str, str],
    status: int,
    body: dict[str, Any],
) -> None:
    handled, resolved = both_ways(api_app, query_event(user_id, query))

    assert handled["statusCode"] == status
    assert json.loads(handled["body"]).items() >= body.items()
    assert handled["headers"]["Content-Type"] == "application/json"
    assert (handled["cookies"], handled["isBase64Encoded"]) == ([], False)
    assert comparable(handled) == comparable(resolved)
    if status == 401:
        assert handled["headers"]["www-authenticate"] == api.NO_SUBJECT


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.none() | values, genre=st.none() | values)
def test_any_query_gets_the_same_answer_both_ways(
    api_app: LocalApp,  # noqa: F811
    k: str | None,
    genre: str | None,
) -> None:
    query = {name: value for name, value in (("k", k), ("genre", genre)) if value is not None}
    handled, resolved = both_ways(api_app, query_event("42", query))

    assert comparable(handled) == comparable(resolved)


def test_the_route_table_is_the_templates(api_app: LocalApp) -> None:  # noqa: F811
    api_app.invoke("RecommendFunction", sample("http-health"))
    module = api_app.hosts.get("RecommendFunction").module
    assert module is not None
    routed = {r.route_key for r in api_app.stack.routes() if r.function_id == "RecommendFunction"}
    assert set(module.ROUTES) == routed
