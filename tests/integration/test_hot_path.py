"""The recommend function's hot path answers exactly as the Powertools resolver does.

``lambda_handler`` answers the plain case of ``GET /v1/recommendations`` itself and hands everything
else to the resolver; here every request goes both ways, and the answers must match.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.lambda_context import LambdaContext
from infra.local.runner import LocalApp
from movierec.recommend import hot_path
from tests.integration.test_recommend_api import api, sample, with_user  # noqa: F401  (fixture)

values = st.one_of(
    st.integers(min_value=-5, max_value=120).map(str),
    st.sampled_from(["Horror", "Crime", "Polka", "", "05", "+5", "5,6", "1e1", " 5", "Horror,Crime"]),
    st.text(max_size=12),
)


def both_ways(api: LocalApp, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: F811
    handled = api.invoke("RecommendFunction", event)
    module = api.hosts.get("RecommendFunction").module
    assert module is not None
    context = LambdaContext(
        function_name="recommend",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:recommend",
        timeout_s=5,
    )
    resolved: dict[str, Any] = module.app.resolve(event, context)
    module.metrics.clear_metrics()  # resolve() alone does not flush, as the handler's decorator does
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


@pytest.mark.parametrize(
    ("user_id", "query"),
    [("42", {"k": "1"}), ("42", {}), ("7", {"k": "100"}), ("42", {"genre": "Crime"}), ("999", {"k": "2"})],
)
def test_the_plain_case_takes_the_hot_path_and_answers_as_the_resolver(
    api: LocalApp,  # noqa: F811
    user_id: str,
    query: dict[str, str],
) -> None:
    event = query_event(user_id, query)
    assert hot_path.parse(event) is not None

    handled, resolved = both_ways(api, event)

    assert handled["statusCode"] == 200
    assert comparable(handled) == comparable(resolved)
    assert json.loads(handled["body"])["recommendation_id"]


@pytest.mark.parametrize(
    ("user_id", "query", "status"),
    [
        (None, {"k": "1"}, 401),
        ("42", {"k": "0"}, 400),
        ("42", {"k": "101"}, 400),
        ("42", {"k": "5,6"}, 400),  # a repeated parameter, as API Gateway v2 joins it
        ("42", {"genre": "Polka"}, 400),  # well-formed but unknown: the resolver's error
        ("42", {"genre": "<b>"}, 400),
    ],
)
def test_everything_else_is_left_to_the_resolver(
    api: LocalApp,  # noqa: F811
    user_id: str | None,
    query: dict[str, str],
    status: int,
) -> None:
    handled, resolved = both_ways(api, query_event(user_id, query))

    assert handled["statusCode"] == status
    assert comparable(handled) == comparable(resolved)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.none() | values, genre=st.none() | values)
def test_any_query_gets_the_same_answer_both_ways(
    api: LocalApp,  # noqa: F811
    k: str | None,
    genre: str | None,
) -> None:
    query = {name: value for name, value in (("k", k), ("genre", genre)) if value is not None}
    handled, resolved = both_ways(api, query_event("42", query))

    assert comparable(handled) == comparable(resolved)
