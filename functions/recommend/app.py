"""Recommend Lambda: the HTTP API. One route table (``ROUTES``); each route parses and validates, calls
the recommender, responds.

No ``from __future__ import annotations`` here: Powertools reads the route signatures at runtime to
validate requests and to generate the OpenAPI document.
"""

import json
import warnings
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Path as PathParam
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from movierec.config import RecommendSettings
from movierec.errors import StoreUnavailableError
from movierec.observability import correlate_http_request, logger, metrics, trace_lambda_handler, tracer
from movierec.recommend import api, endpoint, tuning
from movierec.recommend.service import UnknownGenreError
from movierec.recommend.wiring import build_recommender

# The snapshot and the model are loaded here, at init (see movierec.recommend.wiring).
recommender = build_recommender(RecommendSettings(), package_dir=Path(__file__).resolve().parent)

# /health and /v1/movies/{id}/similar publish no application metrics; Powertools would warn on every
# such request (this is its documented opt-out).
warnings.filterwarnings("ignore", "No application metrics to publish")

try:  # Lambda SnapStart: connections captured in the snapshot are stale after a restore.
    from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]

    register_after_restore(recommender.reconnect)
except ImportError:  # not running under SnapStart
    pass

SIGNED_IN: list[dict[str, list[str]]] = [{"jwt": []}]
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


class UnknownMovieError(Exception):
    pass


# ---- the routes Powertools' resolver answers -----------------------------------------------------------

routes = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves it unannotated


@routes.get(
    "/v1/popular",
    summary="Popular movies, for anonymous visitors",
    responses=_responses(api.RecommendationList, HTTPStatus.BAD_REQUEST),
)
@tracer.capture_method
def get_popular(
    k: api.K = api.DEFAULT_K, genre: api.Genre = None, region: api.Region = None
) -> Response[str]:
    result = recommender.popular(region, k, genre)
    api.record_metrics(result)
    return Response(HTTPStatus.OK.value, content_types.APPLICATION_JSON, api.recommendation_json(result))


@routes.get(
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
def get_similar(movie_id: Annotated[int, PathParam(ge=1)], k: api.K = api.DEFAULT_K) -> api.SimilarMovies:
    items = recommender.similar(movie_id, k)
    if items is None:
        raise UnknownMovieError(movie_id)
    return api.SimilarMovies(movie_id=movie_id, items=[api.movie(item) for item in items])


@routes.get("/health", summary="Liveness and the published version")
def get_health() -> api.Health:
    try:
        version = recommender.published_version()
    except StoreUnavailableError:
        return api.Health(status="degraded", published_version=None)
    return api.Health(status="ok", published_version=version)


def _resolver() -> APIGatewayHttpResolver:
    resolver = APIGatewayHttpResolver(enable_validation=True)
    resolver.configure_openapi(
        title="movierec API",
        version="1",
        summary="Personalised movie recommendations, popular movies and similar movies.",
        security_schemes={"jwt": HTTPBearer(bearerFormat="JWT", description="API Gateway JWT authorizer")},
    )
    resolver.include_router(routes)
    resolver.exception_handler(RequestValidationError)(bad_request)
    resolver.exception_handler(UnknownGenreError)(unknown_genre)
    resolver.exception_handler(UnknownMovieError)(unknown_movie)
    resolver.exception_handler(StoreUnavailableError)(store_unavailable)
    return resolver


def bad_request(error: RequestValidationError) -> Response[str]:
    message = api.problems(error.errors(), skip=1)  # the location's first part is "query" or "path"
    return _error(HTTPStatus.BAD_REQUEST, "invalid_request", message)


def unknown_genre(error: UnknownGenreError) -> Response[str]:
    return _error(HTTPStatus.BAD_REQUEST, "unknown_genre", f"unknown genre {error}")


def unknown_movie(error: UnknownMovieError) -> Response[str]:
    return _error(HTTPStatus.NOT_FOUND, "unknown_movie", f"movie {error} is not known to the model")


def store_unavailable(error: StoreUnavailableError) -> Response[str]:
    """Any route the store's outage reaches (routes with a fallback never let it through)."""
    logger.warning("store unavailable", extra={"error": str(error)})
    return _error(
        HTTPStatus.SERVICE_UNAVAILABLE, "service_unavailable", "the store is unavailable; retry later"
    )


def _error(status: HTTPStatus, code: str, message: str) -> Response[str]:
    return Response(status.value, content_types.APPLICATION_JSON, api.error_json(code, message))


app = _resolver()


# ---- the route table -------------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]

ROUTES: dict[str, Handler] = {
    # Its own parser and encoder, without the resolver's per-request cost (movierec.recommend.endpoint).
    endpoint.ROUTE_KEY: lambda event, _context: endpoint.handle(recommender, event),
    "GET /v1/popular": app.resolve,
    "GET /v1/movies/{movie_id}/similar": app.resolve,
    "GET /health": app.resolve,
}


@logger.inject_lambda_context
@correlate_http_request
@trace_lambda_handler  # a user's recommendations stay out of traces
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return ROUTES.get(event.get("routeKey", ""), app.resolve)(event, context)


def get_recommendations(k: api.K = api.DEFAULT_K, genre: api.Genre = None) -> api.RecommendationList:
    """``GET /v1/recommendations`` as the OpenAPI document describes it: ``endpoint.handle`` answers the
    route (its query is ``api.RecommendationQuery``, of these same types); this signature only gives
    the document its shape."""
    raise NotImplementedError(endpoint.ROUTE_KEY)


def openapi_document() -> str:
    """The API's OpenAPI document, as published in docs/openapi.json (`make openapi`).

    Request validation answers 400 with an ErrorBody (see ``bad_request``), so Powertools' generic 422
    entries are left out: they would describe a response this API never sends.
    """
    documented = _resolver()
    documented.get(
        "/v1/recommendations",
        summary="Personalised recommendations for the signed-in user",
        security=SIGNED_IN,
        responses=_responses(api.RecommendationList, HTTPStatus.BAD_REQUEST, HTTPStatus.UNAUTHORIZED),
    )(get_recommendations)
    document = json.loads(documented.get_openapi_json_schema())
    for operation in (op for path in document["paths"].values() for op in path.values()):
        operation.get("responses", {}).pop("422", None)
    for unused in ("HTTPValidationError", "ValidationError"):
        document.get("components", {}).get("schemas", {}).pop(unused, None)
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


tuning.settle_after_init()  # last: everything init built is in place

if __name__ == "__main__":
    print(openapi_document(), end="")
