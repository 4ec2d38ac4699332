"""Recommend Lambda: the HTTP API. Routes parse and validate, call the recommender, respond.

No ``from __future__ import annotations`` here: Powertools reads the route signatures at runtime to
validate requests and to generate the OpenAPI document.
"""

import gc
import json
import warnings
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from movierec.config import RecommendSettings
from movierec.errors import StoreUnavailableError
from movierec.observability import correlate_http_request, logger, metrics, trace_lambda_handler, tracer
from movierec.recommend import api, hot_path
from movierec.recommend.service import UnknownGenreError
from movierec.recommend.wiring import build_recommender

recommender = build_recommender(RecommendSettings())

# /health and /v1/movies/{id}/similar publish no application metrics; Powertools would warn on every
# such request (this is its documented opt-out).
warnings.filterwarnings("ignore", "No application metrics to publish")

try:  # Lambda SnapStart: connections captured in the snapshot are stale after a restore.
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]

    register_after_restore(recommender.reconnect)
except ImportError:  # not running under SnapStart
    pass
app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="movierec API",
    version="1",
    summary="Personalised movie recommendations, popular movies and similar movies.",
    security_schemes={"jwt": HTTPBearer(bearerFormat="JWT", description="API Gateway JWT authorizer")},
)
SIGNED_IN: list[dict[str, list[str]]] = [{"jwt": []}]


def _responses(ok: type[BaseModel], *errors: HTTPStatus) -> dict[int, Any]:
    """Documented responses: the success body, then the errors (each an ``ErrorBody``, but the 401: API
    Gateway's JWT authorizer answers it, see ``UNAUTHORIZED``). Once a route names any, Powertools
    documents only those, so the 200 is listed here too."""
    documented: dict[int, Any] = {200: {"description": "OK", "content": {"application/json": {"model": ok}}}}
    for code in errors:
        documented[code.value] = {
            "description": code.phrase,
            "content": {"application/json": {"model": api.ErrorBody}},
        }
    if HTTPStatus.UNAUTHORIZED in errors:
        documented[HTTPStatus.UNAUTHORIZED.value] = UNAUTHORIZED
    return documented


UNAUTHORIZED: dict[str, Any] = {
    "description": "No usable token: missing, malformed, expired, or not issued for this API. API Gateway's"
    " JWT authorizer answers this, before the function runs; its www-authenticate header says why.",
    "headers": {
        "www-authenticate": {
            "description": 'e.g. `Bearer scope="" error="invalid_token" error_description="the token has'
            ' expired"`',
            "schema": {"type": "string"},
        }
    },
    "content": {"application/json": {"model": api.GatewayError}},
}


K = Annotated[int, Query(ge=1, le=api.MAX_K, description="How many movies to return.")]
Genre = Annotated[str | None, Query(pattern=api.GENRE_PATTERN, description="Only movies of this genre.")]


class UnauthorizedError(Exception):
    pass


class UnknownMovieError(Exception):
    pass


@app.get(
    "/v1/recommendations",
    summary="Personalised recommendations for the signed-in user",
    security=SIGNED_IN,
    responses=_responses(api.RecommendationList, HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
)
@tracer.capture_method
def get_recommendations(k: K = 10, genre: Genre = None) -> api.RecommendationList:
    claims = app.current_event.request_context.authorizer.jwt_claim or {}
    user_id = claims.get("sub")
    if not isinstance(user_id, str) or not user_id:
        raise UnauthorizedError
    result = recommender.recommend(user_id, k, genre)
    api.record_metrics(result)
    return api.recommendation_list(result)


@app.get(
    "/v1/popular",
    summary="Popular movies, for anonymous visitors",
    responses=_responses(api.RecommendationList, HTTPStatus.BAD_REQUEST),
)
@tracer.capture_method
def get_popular(
    k: K = 10,
    genre: Genre = None,
    region: Annotated[str | None, Query(pattern=api.REGION_PATTERN)] = None,
) -> api.RecommendationList:
    result = recommender.popular(region, k, genre)
    api.record_metrics(result)
    return api.recommendation_list(result)


@app.get(
    "/v1/movies/<movie_id>/similar",
    summary="Movies similar to this one",
    security=SIGNED_IN,
    responses=_responses(
        api.SimilarMovies,
        HTTPStatus.BAD_REQUEST,
        HTTPStatus.UNAUTHORIZED,
        HTTPStatus.NOT_FOUND,
        HTTPStatus.SERVICE_UNAVAILABLE,  # the store is down: similarity has no fallback
    ),
)
@tracer.capture_method
def get_similar(movie_id: Annotated[int, Path(ge=1)], k: K = 10) -> api.SimilarMovies:
    items = recommender.similar(movie_id, k)
    if items is None:
        raise UnknownMovieError(movie_id)
    return api.SimilarMovies(movie_id=movie_id, items=[api.movie(item) for item in items])


@app.get("/health", summary="Liveness and the published version")
def get_health() -> api.Health:
    try:
        version = recommender.published_version()
    except StoreUnavailableError:
        return api.Health(status="degraded", published_version=None)
    return api.Health(status="ok", published_version=version)


@app.exception_handler(RequestValidationError)
def bad_request(error: RequestValidationError) -> Response[Any]:
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in error.errors())
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", problems)


@app.exception_handler(UnknownGenreError)
def unknown_genre(error: UnknownGenreError) -> Response[Any]:
    return _error(HTTPStatus.BAD_REQUEST, "unknown_genre", f"unknown genre {error}")


@app.exception_handler(UnknownMovieError)
def unknown_movie(error: UnknownMovieError) -> Response[Any]:
    return _error(HTTPStatus.NOT_FOUND, "unknown_movie", f"movie {error} is not known to the model")


@app.exception_handler(UnauthorizedError)
def unauthorized(_: UnauthorizedError) -> Response[Any]:
    """A token without a subject: answered as API Gateway's authorizer answers a bad token, so that
    clients see one 401."""
    return Response(
        status_code=HTTPStatus.UNAUTHORIZED.value,
        content_type=content_types.APPLICATION_JSON,
        body=api.GatewayError(message="Unauthorized").model_dump_json(),
        headers={"www-authenticate": 'Bearer error="invalid_token" error_description="no subject"'},
    )


@app.exception_handler(StoreUnavailableError)
def store_unavailable(error: StoreUnavailableError) -> Response[Any]:
    """Any route the store's outage reaches (routes with a fallback never let it through)."""
    logger.warning("store unavailable", extra={"error": str(error)})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "the store is unavailable; retry later"
    )


def _error(status: HTTPStatus, code: str, message: str) -> Response[Any]:
    body = api.ErrorBody(error=code, message=message).model_dump_json()
    return Response(status_code=status.value, content_type=content_types.APPLICATION_JSON, body=body)


@logger.inject_lambda_context
@correlate_http_request
@trace_lambda_handler  # a user's recommendations stay out of traces
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The hot route's plain case skips the resolver's per-request cost; everything else, errors
    # included, goes through the resolver (see movierec.recommend.hot_path).
    request = hot_path.parse(event)
    response = hot_path.answer(recommender, request) if request is not None else None
    return response if response is not None else app.resolve(event, context)


def openapi_document() -> str:
    """The API's OpenAPI document, as published in docs/openapi.json (`make openapi`).

    Request validation answers 400 with an ErrorBody (see ``bad_request``), so Powertools' generic 422
    entries are left out: they would describe a response this API never sends.
    """
    document = json.loads(app.get_openapi_json_schema())
    for operation in (op for path in document["paths"].values() for op in path.values()):
        operation.get("responses", {}).pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


# Latency, measured (docs/benchmarks.md): what init built lives as long as the container, so it is moved
# out of the collector's sight; and a request's garbage is freed by reference counting, so collections
# can be rare. With CPython's default (one every 700 allocations, about every 5 requests here) they
# were the cached path's p99.
gc.freeze()
gc.set_threshold(50_000)

if __name__ == "__main__":
    print(openapi_document(), end="")
