"""The hot route without the framework: ``GET /v1/recommendations`` with well-formed parameters.

Powertools' validated resolver costs about 0.3 ms a request here (routing, pydantic validation of the
query and of the response, re-encoding), more than the Redis round trip behind it. This module answers
the route's happy path with the same contract (``api.RecommendationList``). Anything else (no identity,
a malformed, repeated or out-of-range parameter, an unknown genre) returns None and the resolver
answers, so every error response has exactly one implementation.
``tests/integration/test_hot_path.py`` proves both give the same answers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from movierec.recommend import api
from movierec.recommend.service import Recommender, UnknownGenreError

ROUTE_KEY = "GET /v1/recommendations"
DEFAULT_K = 10
_K = re.compile(r"[1-9][0-9]{0,2}")  # no sign, no leading zero: the resolver handles the odd spellings
_GENRE = re.compile(api.GENRE_PATTERN)
_JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class RecommendationRequest:
    user_id: str
    k: int
    genre: str | None


def parse(event: Mapping[str, Any]) -> RecommendationRequest | None:
    """The request, when it is the hot route's plain case; None sends it to the resolver."""
    if event.get("routeKey") != ROUTE_KEY:
        return None
    try:
        user_id = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
    except (KeyError, TypeError):
        return None
    if not isinstance(user_id, str) or not user_id:
        return None
    query = event.get("queryStringParameters") or {}
    k_text = query.get("k")
    genre = query.get("genre")
    if k_text is None:
        k = DEFAULT_K
    elif isinstance(k_text, str) and _K.fullmatch(k_text) and int(k_text) <= api.MAX_K:
        k = int(k_text)
    else:
        return None
    if genre is not None and not (isinstance(genre, str) and _GENRE.fullmatch(genre)):
        return None
    return RecommendationRequest(user_id, k, genre)


def answer(recommender: Recommender, request: RecommendationRequest) -> dict[str, Any] | None:
    """The API Gateway response, as the resolver would build it; None for an unknown genre."""
    try:
        result = recommender.recommend(request.user_id, request.k, request.genre)
    except UnknownGenreError:
        return None
    api.record_metrics(result)
    return {
        "statusCode": 200,
        "body": api.recommendation_json(result),
        "isBase64Encoded": False,
        "headers": dict(_JSON_HEADERS),
        "cookies": [],
    }
