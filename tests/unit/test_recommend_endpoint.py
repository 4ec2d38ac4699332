"""The recommendations route's parser and encoder, with no server: one recommend per request, the one
default k, and runtime tuning only when init asks for it."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from movierec.config import RecommendSettings
from movierec.publication import Item
from movierec.recommend import api, endpoint
from movierec.recommend.service import Recommendations, Tier, UnknownGenreError


class CountingRecommender:
    """Stands in for the recommender (which needs Redis) and remembers what it was asked."""

    def __init__(self, known_genres: set[str]) -> None:
        self.calls: list[tuple[str, int, str | None]] = []
        self._known = known_genres

    def recommend(self, user_id: str, k: int, genre: str | None = None) -> Recommendations:
        self.calls.append((user_id, k, genre))
        if genre is not None and genre not in self._known:
            raise UnknownGenreError(genre)
        items = [Item(1, 0.5, "Alien", ("Horror",), 1979)]
        return Recommendations(items, Tier.PERSONALIZED, "v1", "rid", [], {"personalized": 0.1})


def event(query: dict[str, str] | None, sub: str | None = "42") -> dict[str, Any]:
    claims = {"sub": sub} if sub is not None else {}
    return {
        "routeKey": endpoint.ROUTE_KEY,
        "queryStringParameters": query,
        "requestContext": {"authorizer": {"jwt": {"claims": claims}}},
    }


def handle(recommender: CountingRecommender, request: dict[str, Any]) -> dict[str, Any]:
    return endpoint.handle(recommender, request)  # type: ignore[arg-type]  # a stand-in, duck-typed


def test_an_unknown_genre_runs_recommend_once_and_is_400() -> None:
    recommender = CountingRecommender({"Horror"})

    response = handle(recommender, event({"genre": "Polka"}))

    assert response["statusCode"] == 400
    assert json.loads(response["body"]) == {"error": "unknown_genre", "message": "unknown genre Polka"}
    assert recommender.calls == [("42", api.DEFAULT_K, "Polka")]


def test_k_defaults_to_the_one_documented_default() -> None:
    recommender = CountingRecommender(set())

    response = handle(recommender, event(None))

    assert response["statusCode"] == 200
    assert recommender.calls == [("42", api.DEFAULT_K, None)]
    assert "default_k" not in RecommendSettings.model_fields, "the API's default is not configuration"


@pytest.mark.parametrize(("query", "sub"), [({"k": "0"}, "42"), ({"k": "1"}, None), ({"k": "1"}, "")])
def test_a_rejected_request_never_reaches_the_recommender(query: dict[str, str], sub: str | None) -> None:
    recommender = CountingRecommender(set())

    response = handle(recommender, event(query, sub))

    assert response["statusCode"] in {400, 401}
    assert recommender.calls == []


def test_the_body_is_a_recommendation_list() -> None:
    response = handle(CountingRecommender(set()), event({"k": "1"}))

    body = api.RecommendationList.model_validate_json(response["body"])
    assert (body.source, body.degraded, body.model_version) == ("personalized", False, "v1")
    assert response["headers"] == {"Content-Type": "application/json"}


def test_importing_the_recommend_package_tunes_nothing() -> None:
    """gc.freeze and the collection threshold are init's explicit call (tuning.settle_after_init)."""
    probe = (
        "import gc; t = gc.get_threshold();"
        "import movierec.recommend.endpoint, movierec.recommend.wiring, movierec.recommend.tuning;"
        "assert gc.get_threshold() == t and gc.get_freeze_count() == 0, (gc.get_threshold(), t);"
        "movierec.recommend.tuning.settle_after_init();"
        "assert gc.get_threshold()[0] == movierec.recommend.tuning.GC_THRESHOLD and gc.get_freeze_count() > 0"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)
