"""How the chain reads the store: the user once per request, in one command; the publication from the
container's caches; a heavy user's whole seen set only when a tier below the cached lists needs it."""

from __future__ import annotations

from collections.abc import Callable

import redis

from bench.common import RedisTraffic
from movierec.recommend.service import Recommender, Tier
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.blobs import BlobStore
from movierec.stores.serving import SEEN_READ_WHOLE, ServingStore
from tests.integration.test_recommend import (  # noqa: F401  (fixture)
    POLICY,
    blobs,
    items,
    publish_version,
    sign_up,
    watched_long_ago,
)


def commands_during(action: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """Round trips, and the commands the client sent in them (a script's own calls are not counted)."""
    with RedisTraffic().counting() as seen:
        action()
    return seen.round_trips, dict(seen.commands)


def frozen_recommender(client: redis.Redis) -> Recommender:
    """A store whose in-process caches never expire: what a warm container sees within a second."""
    return Recommender(ServingStore(client, clock=lambda: 0.0), PopularitySnapshot(), POLICY)


def test_a_cached_list_costs_one_redis_command(redis_client: redis.Redis, blobs: BlobStore) -> None:  # noqa: F811
    publish_version(redis_client, blobs, {"bo": items(5, 3, 1, 2)})
    service = frozen_recommender(redis_client)
    service.recommend("bo", k=2)  # the container's caches: version, manifest, retired movies

    calls = commands_during(lambda: service.recommend("bo", k=2))

    assert calls == (1, {"EVALSHA": 1})


def test_a_region_answer_costs_the_same_one_read_once_popularity_is_cached(
    redis_client: redis.Redis,
    blobs: BlobStore,  # noqa: F811
) -> None:
    """No list and a sign-up region: recent movies and the profile came with the one read."""
    publish_version(redis_client, blobs)
    sign_up(redis_client, "ana", "EU")
    service = frozen_recommender(redis_client)
    assert service.recommend("ana", k=2).tier is Tier.REGIONAL_POPULAR

    calls = commands_during(lambda: service.recommend("ana", k=2))

    assert calls == (1, {"EVALSHA": 1})


def test_a_heavy_users_list_too_short_for_k_reads_the_rest_of_the_user_once(
    redis_client: redis.Redis,
    blobs: BlobStore,  # noqa: F811
) -> None:
    """The one read held only the listed part of the seen set; popularity needs all of it, and the
    profile: one more round trip, once."""
    publish_version(redis_client, blobs, {"hal": items(5, 3)})
    heavy = [1, *range(1_000, 1_000 + SEEN_READ_WHOLE + 100)]  # 1 is first in global popularity
    watched_long_ago(redis_client, "hal", heavy)
    service = frozen_recommender(redis_client)
    service.recommend("hal", k=3)

    calls = commands_during(lambda: service.recommend("hal", k=3))
    result = service.recommend("hal", k=3)

    assert calls == (2, {"EVALSHA": 1, "ZREVRANGE": 1, "SMEMBERS": 1, "HGETALL": 1})
    assert result.tier is Tier.GLOBAL_POPULAR
    assert [i.movie_id for i in result.items] == [2, 3, 4]
    assert ("personalized", "exhausted") in [(f.tier.value, f.reason) for f in result.fallbacks]
