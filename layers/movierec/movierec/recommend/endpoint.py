"""``GET /v1/recommendations``, whole: its one request parser, its one response encoder, its errors.

The handler's route table sends this route here rather than to Powertools' resolver, whose routing and
validation cost about 0.3 ms a request, more than the Redis read behind it (docs/benchmarks.md). The
contract is the resolver's all the same: the query is validated by ``api.RecommendationQuery``, built
from the parameter types the other routes use, so errors read as theirs do; the body is
``api.RecommendationList``; and the OpenAPI document describes this route from the same types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from movierec.recommend import api
from movierec.recommend.service import Recommender, UnknownGenreError

ROUTE_KEY = "GET /v1/recommendations"
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    user_id: str
    k: int
    genre: str | None


class RequestError(Exception):
    """A request this route answers with an error before any recommending: the response is attached."""

    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response["statusCode"])
        self.response = response


def handle(recommender: Recommender, event: Mapping[str, Any]) -> dict[str, Any]:
    """The API Gateway (payload 2.0) response to one request of this route."""
    try:
        request = parse(event)
        result = recommender.recommend(request.user_id, request.k, request.genre)
    except RequestError as error:
        return error.response
    except UnknownGenreError as error:
        return error_response(HTTPStatus.BAD_REQUEST, "unknown_genre", f"unknown genre {error}")
    api.record_metrics(result)
    return response(HTTPStatus.OK, api.recommendation_json(result))


def parse(event: Mapping[str, Any]) -> RecommendationRequest:
    """The query first, then the identity (so a malformed query is a 400 before a missing subject is a
    401, as the resolver answered). RequestError otherwise."""
    try:
        query = api.RecommendationQuery.model_validate(event.get("queryStringParameters") or {})
    except ValidationError as error:
        problems = api.problems(error.errors())
        raise RequestError(error_response(HTTPStatus.BAD_REQUEST, "invalid_request", problems)) from None
    user_id = subject(event)
    if user_id is None:
        raise RequestError(unauthorized())
    return RecommendationRequest(user_id, query.k, query.genre)


def subject(event: Mapping[str, Any]) -> str | None:
    """The JWT's ``sub``, as API Gateway's JWT authorizer passes it; None when there is none."""
    context = event.get("requestContext") or {}
    authorizer = context.get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims") or {}
    user_id = claims.get("sub")
    return user_id if isinstance(user_id, str) and user_id else None


def response(status: HTTPStatus, body: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A JSON response, shaped as the resolver shapes its own."""
    return {
        "statusCode": status.value,
        "body": body,
        "isBase64Encoded": False,
        "headers": {**(headers or {}), "Content-Type": _JSON},
        "cookies": [],
    }


def error_response(status: HTTPStatus, code: str, message: str) -> dict[str, Any]:
    return response(status, api.error_json(code, message))


def unauthorized() -> dict[str, Any]:
    return response(HTTPStatus.UNAUTHORIZED, api.UNAUTHORIZED_JSON, {"www-authenticate": api.NO_SUBJECT})
