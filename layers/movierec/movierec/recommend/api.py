"""The HTTP contract of the recommend API: query parameters, response models (and so the OpenAPI
document), error bodies and the mapping from domain results to them.

No ``from __future__ import annotations`` here: the ``Annotated`` parameter types are read at runtime,
by pydantic (``RecommendationQuery``) and by Powertools (the routes' signatures in the handler).
"""

import time
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import orjson
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from pydantic import BaseModel, ConfigDict, Field

from movierec.observability import METRIC_NAMESPACE, MetricName, metrics
from movierec.publication import Item
from movierec.recommend.service import Recommendations, Tier
from movierec.served import SERVED_LIST_KEY, served_document

MAX_K = 100
DEFAULT_K = 10
GENRE_PATTERN = r"^[A-Za-z0-9 '&().-]{1,40}$"
REGION_PATTERN = r"^[A-Za-z0-9 _.-]{1,64}$"

K = Annotated[int, Query(ge=1, le=MAX_K, description="How many movies to return.")]
Genre = Annotated[str | None, Query(pattern=GENRE_PATTERN, description="Only movies of this genre.")]
Region = Annotated[str | None, Query(pattern=REGION_PATTERN)]


class RecommendationQuery(BaseModel):
    """The query of ``GET /v1/recommendations``: validated exactly as Powertools validates the other
    routes' parameters (the same field types, pydantic's lax mode), so errors read the same."""

    model_config = ConfigDict(frozen=True)

    k: K = DEFAULT_K
    genre: Genre = None


Source = Literal["personalized", "online", "regional_popular", "global_popular"]


class Movie(BaseModel):
    movie_id: int
    title: str
    genres: list[str]
    year: int | None
    score: float


class RecommendationList(BaseModel):
    recommendation_id: str = Field(
        description="Log it with impressions and clicks to measure online quality."
    )
    source: Source = Field(description="Which tier served the list.")
    model_version: str | None = Field(description="The published version the list came from.")
    degraded: bool = Field(description="True when served from the in-memory snapshot (the cache was down).")
    items: list[Movie]


class SimilarMovies(BaseModel):
    movie_id: int
    items: list[Movie]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    published_version: str | None


class ErrorBody(BaseModel):
    error: str
    message: str


class GatewayError(BaseModel):
    """What API Gateway itself answers (its JWT authorizer's 401 is ``{"message": "Unauthorized"}``)."""

    message: str


def problems(errors: Iterable[Mapping[str, Any]], *, skip: int = 0) -> str:
    """A validation failure as one message, ``"k: Input should be ...; genre: ..."``. ``skip`` drops the
    leading parts of each location (Powertools prefixes ``query``/``path``)."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'][skip:])}: {e['msg']}" for e in errors)


def error_json(code: str, message: str) -> str:
    return ErrorBody(error=code, message=message).model_dump_json()


UNAUTHORIZED_JSON = GatewayError(message="Unauthorized").model_dump_json()
NO_SUBJECT = 'Bearer error="invalid_token" error_description="no subject"'
"""The ``www-authenticate`` of a token without a subject, answered as API Gateway answers a bad token."""


def movie(item: Item) -> Movie:
    return Movie(
        movie_id=item.movie_id, title=item.title, genres=list(item.genres), year=item.year, score=item.score
    )


def recommendation_list(result: Recommendations) -> RecommendationList:
    return RecommendationList.model_validate(recommendation_document(result))


def recommendation_json(result: Recommendations) -> str:
    """The ``RecommendationList`` body as compact JSON (what the resolver sends, parsed, is the same)."""
    return orjson.dumps(recommendation_document(result)).decode()


def recommendation_document(result: Recommendations) -> dict[str, Any]:
    """A ``RecommendationList`` as plain JSON types: the one mapping both encodings start from."""
    return {
        "recommendation_id": result.recommendation_id,
        "source": result.tier.source,
        "model_version": result.model_version,
        "degraded": result.tier is Tier.SNAPSHOT,
        "items": [
            {
                "movie_id": item.movie_id,
                "title": item.title,
                "genres": list(item.genres),
                "year": item.year,
                "score": item.score,
            }
            for item in result.items
        ],
    }


def record_metrics(result: Recommendations) -> None:
    """One EMF document per request, its dimension the serving tier, and one metric in it:
    ``TierLatencyMs``. Its ``SampleCount`` is the number of requests each tier served, and the cache hit
    rate is the ``personalized`` share of that (metric math on the dashboards). A count of its own, or a
    hit-rate metric, would cost the hot path its share of every flush (docs/benchmarks.md).

    The same document carries the answer's served-list record (``movierec.served``) under
    ``SERVED_LIST_KEY``: the log line is written anyway, so the record costs no call of its own."""
    metrics.add_metadata(
        key=SERVED_LIST_KEY,
        value=served_document(
            recommendation_id=result.recommendation_id,
            served_at=time.time(),
            user_id=result.user_id,
            tier=result.tier.value,
            model_version=result.model_version,
            variant=result.variant,
            experiment=result.experiment,
            movie_ids=[item.movie_id for item in result.items],
        ),
    )
    metrics.add_dimension(name="tier", value=result.tier.value)
    metrics.add_metric(
        name=MetricName.TIER_LATENCY_MS, unit="Milliseconds", value=sum(result.tier_ms.values())
    )
    if result.fallbacks:
        metrics.add_metric(name=MetricName.FALLBACK, unit="Count", value=len(result.fallbacks))
        # The EMF document is a log line too: each request's reasons and per-tier latency, searchable.
        metrics.add_metadata(key="fallbacks", value=[f"{f.tier.value}: {f.reason}" for f in result.fallbacks])
        metrics.add_metadata(key="tier_ms", value={tier: round(ms, 3) for tier, ms in result.tier_ms.items()})
        for fallback in result.fallbacks:
            # Its own EMF document: the reason is a dimension here, and must not be on every metric.
            with single_metric(
                name=MetricName.FALLBACK_REASON, unit=MetricUnit.Count, value=1, namespace=METRIC_NAMESPACE
            ) as reason:
                reason.add_dimension(name="from_tier", value=fallback.tier.value)
                reason.add_dimension(name="reason", value=fallback.reason)
