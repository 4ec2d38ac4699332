"""The recommend chain against real Redis: every tier, real-time freshness, outages, half publishes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis

from infra.local.servers import RedisServer
from movierec import keys
from movierec.contracts import Engagement, MovieChange, ProfileChange
from movierec.errors import StoreUnavailableError
from movierec.publication import Item, MovieInfo, item_row
from movierec.recommend.service import Recommender, ServingPolicy, Tier, UnknownGenreError
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.blobs import BlobStore
from movierec.stores.realtime import RealtimeState, TrendingPolicy
from movierec.stores.serving import ServingStore
from training_job.publishing import PopularityPolicy, publish
from training_job.stores.publication import PublicationStore

CATALOGUE = {
    1: MovieInfo("Alien", ("Horror", "Sci-Fi"), 1979),
    2: MovieInfo("Amélie", ("Comedy", "Romance"), 2001),
    3: MovieInfo("Heat", ("Crime",), 1995),
    4: MovieInfo("Up", ("Animation",), 2009),
    5: MovieInfo("Jaws", ("Horror",), 1975),
}
POLICY = ServingPolicy(deadline_ms=100, online_cache_ttl_seconds=60, trending_bucket_seconds=3600)


def items(*movie_ids: int) -> list[Item]:
    return [Item(m, 1.0 / rank, *vars_of(CATALOGUE[m])) for rank, m in enumerate(movie_ids, start=1)]


def vars_of(info: MovieInfo) -> tuple[str, tuple[str, ...], int | None]:
    return info.title, info.genres, info.year


@pytest.fixture
def blobs(aws_reset: str) -> BlobStore:
    boto3.client("s3").create_bucket(Bucket="artifacts")
    return BlobStore("artifacts")


def publish_version(
    client: redis.Redis, blobs: BlobStore, personal: dict[str, list[Item]] | None = None
) -> str:
    popularity = {keys.GLOBAL_SEGMENT: items(1, 2, 3, 4, 5), keys.region_segment("eu"): items(2, 4, 1, 3, 5)}
    return publish(
        PublicationStore(client),
        blobs,
        popularity,
        iter((personal or {}).items()),
        CATALOGUE,
        data_cutoff=time.time() - 60,
        grace_seconds=60,
    ).version


def recommender(client: redis.Redis, snapshot: PopularitySnapshot | None = None) -> Recommender:
    return Recommender(ServingStore(client), snapshot or PopularitySnapshot(), POLICY)


def sign_up(client: redis.Redis, user_id: str, region: str) -> None:
    state = RealtimeState(client, recent_length=10, applied_ttl_seconds=3600)
    state.apply(
        [], [ProfileChange(user_id, {"region": region}, "v1")], [], TrendingPolicy(3600, 24), time.time()
    )


def engage(client: redis.Redis, user_id: str, movie_id: int, event_id: str) -> None:
    state = RealtimeState(client, recent_length=10, applied_ttl_seconds=3600)
    now = time.time()
    state.apply(
        [Engagement(event_id, user_id, movie_id, now, "watch")], [], [], TrendingPolicy(3600, 24), now
    )


def test_a_user_in_a_region_gets_that_regions_popular_movies(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    version = publish_version(redis_client, blobs)
    sign_up(redis_client, "ana", "EU")

    result = recommender(redis_client).recommend("ana", k=3)

    assert result.tier is Tier.REGIONAL_POPULAR
    assert [i.movie_id for i in result.items] == [2, 4, 1]
    assert result.model_version == version
    assert result.items[0].title == "Amélie"


def test_a_user_without_a_region_gets_global_popularity(redis_client: redis.Redis, blobs: BlobStore) -> None:
    publish_version(redis_client, blobs)

    result = recommender(redis_client).recommend("nobody", k=2)

    assert result.tier is Tier.GLOBAL_POPULAR
    assert [i.movie_id for i in result.items] == [1, 2]
    assert [f.reason for f in result.fallbacks if f.tier is Tier.REGIONAL_POPULAR] == ["no segment"]


def test_a_precomputed_list_is_served_minus_what_was_watched_since(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    publish_version(redis_client, blobs, {"bo": items(5, 3, 1, 2)})
    service = recommender(redis_client)
    assert [i.movie_id for i in service.recommend("bo", k=2).items] == [5, 3]

    engage(redis_client, "bo", 5, "e-1")
    after = service.recommend("bo", k=2)

    # The watch is newer than the published list, so the list is stale: the chain moves on, and
    # movie 5 is excluded everywhere.
    assert 5 not in [i.movie_id for i in after.items]
    assert [f.reason for f in after.fallbacks if f.tier is Tier.PERSONALIZED] == ["stale"]


def test_a_redis_node_that_lost_its_scripts_still_serves_the_cached_list(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    publish_version(redis_client, blobs, {"bo": items(5, 3, 1, 2)})
    service = recommender(redis_client)
    service.recommend("bo", k=2)
    redis_client.script_flush()  # what a restarted or failed-over node has forgotten

    result = service.recommend("bo", k=2)

    assert (result.tier, [i.movie_id for i in result.items]) == (Tier.PERSONALIZED, [5, 3])
    assert not result.fallbacks


def test_a_list_too_short_for_k_falls_through_to_the_users_region(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    """The one read found a usable-looking list, so it did not bring the profile: it is read now."""
    publish_version(redis_client, blobs, {"gus": items(1)})
    sign_up(redis_client, "gus", "EU")

    result = recommender(redis_client).recommend("gus", k=2)

    assert result.tier is Tier.REGIONAL_POPULAR
    assert [i.movie_id for i in result.items] == [2, 4]
    assert ("personalized", "exhausted") in [(f.tier.value, f.reason) for f in result.fallbacks]


def watched_long_ago(client: redis.Redis, user_id: str, movie_ids: list[int]) -> None:
    """Engagements older than any publication here: in the seen set, but no list goes stale."""
    at = time.time() - 86_400
    state = RealtimeState(client, recent_length=10, applied_ttl_seconds=3600)
    engagements = [Engagement(f"{user_id}-{m}", user_id, m, at, "watch") for m in movie_ids]
    state.apply(engagements, [], [], TrendingPolicy(3600, 24), at)


def test_a_heavy_users_seen_set_is_not_read_whole_for_a_usable_list(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    version = publish_version(redis_client, blobs, {"hal": items(5, 3, 1, 2, 4)})
    watched_long_ago(redis_client, "hal", [3, *range(1_000, 4_000)])  # 3,001 movies, one of them listed

    user = ServingStore(redis_client).read_user("hal")
    result = recommender(redis_client).recommend("hal", k=3)

    assert user.publication.version == version
    assert (user.seen, user.complete) == (frozenset({3}), False)
    assert (result.tier, [i.movie_id for i in result.items]) == (Tier.PERSONALIZED, [5, 1, 2])


def test_a_list_published_in_format_1_still_serves_minus_seen_movies(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    version = publish_version(redis_client, blobs)
    rows = [item_row(item) for item in items(5, 3, 1, 2)]
    redis_client.set(keys.recommendations(version, "ivy"), json.dumps(rows, separators=(",", ":")))
    watched_long_ago(redis_client, "ivy", [3, 9])

    user = ServingStore(redis_client).read_user("ivy")
    result = recommender(redis_client).recommend("ivy", k=3)

    assert user.seen == frozenset({3, 9}), "format 1: the whole seen set, as before"
    assert (result.tier, [i.movie_id for i in result.items]) == (Tier.PERSONALIZED, [5, 1, 2])


def test_a_list_too_short_falls_back_with_every_seen_movie_excluded(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    publish_version(redis_client, blobs, {"jo": items(5, 3)})
    watched_long_ago(redis_client, "jo", [1, 2])  # not in jo's list, but in global popularity

    result = recommender(redis_client).recommend("jo", k=3)

    assert result.tier is Tier.GLOBAL_POPULAR
    assert [i.movie_id for i in result.items] == [3, 4, 5]


def test_seen_movies_leave_popular_lists_in_real_time(redis_client: redis.Redis, blobs: BlobStore) -> None:
    publish_version(redis_client, blobs)
    service = recommender(redis_client)
    engage(redis_client, "cy", 1, "e-2")

    assert [i.movie_id for i in service.recommend("cy", k=2).items] == [2, 3]


def test_genre_filter_and_unknown_genres(redis_client: redis.Redis, blobs: BlobStore) -> None:
    publish_version(redis_client, blobs)
    service = recommender(redis_client)

    assert [i.movie_id for i in service.recommend("dee", k=5, genre="Horror").items] == [1, 5]
    with pytest.raises(UnknownGenreError):
        service.recommend("dee", k=5, genre="Polka")


def test_anonymous_popular_by_region(redis_client: redis.Redis, blobs: BlobStore) -> None:
    publish_version(redis_client, blobs)
    service = recommender(redis_client)

    assert service.popular("EU", k=2).tier is Tier.REGIONAL_POPULAR
    assert service.popular("Atlantis", k=2).tier is Tier.GLOBAL_POPULAR
    assert service.popular(None, k=2).tier is Tier.GLOBAL_POPULAR


def test_a_movie_retired_after_publication_leaves_anonymous_popular_lists(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    publish_version(redis_client, blobs)
    state = RealtimeState(redis_client, recent_length=10, applied_ttl_seconds=3600)
    state.apply([], [], [MovieChange(1, "v2", retired=True)], TrendingPolicy(3600, 24), time.time())

    assert [i.movie_id for i in recommender(redis_client).popular(None, k=2).items] == [2, 3]


def test_trending_now_lifts_a_movie_into_popular_lists(redis_client: redis.Redis, blobs: BlobStore) -> None:
    publish_version(redis_client, blobs)
    for n in range(50):
        engage(redis_client, f"fan{n}", 5, f"t-{n}")

    ranked = [i.movie_id for i in recommender(redis_client).popular(None, k=5).items]

    assert ranked[0] == 5, "fifty watches this hour outrank yesterday's batch popularity"


def publish_segmented(
    client: redis.Redis, blobs: BlobStore, policy: PopularityPolicy, extra: dict[str, list[Item]]
) -> str:
    """A version whose popularity is segmented as the training job chose (``policy``)."""
    popularity = {keys.GLOBAL_SEGMENT: items(1, 2, 3, 4, 5), keys.region_segment("eu"): items(2, 4, 1, 3, 5)}
    return publish(
        PublicationStore(client),
        blobs,
        popularity | extra,
        iter([]),
        CATALOGUE,
        data_cutoff=time.time() - 60,
        grace_seconds=60,
        policy=policy,
    ).version


def sign_up_with(client: redis.Redis, user_id: str, fields: dict[str, str | int]) -> None:
    state = RealtimeState(client, recent_length=10, applied_ttl_seconds=3600)
    state.apply([], [ProfileChange(user_id, fields, "v1")], [], TrendingPolicy(3600, 24), time.time())


def test_the_published_segment_definition_decides_and_region_backs_it_up(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    year = time.gmtime().tm_year
    policy = PopularityPolicy("region+age_band", 50.0, 0.3)
    publish_segmented(redis_client, blobs, policy, {"region=eu|age=25-34": items(3, 5, 1, 2, 4)})
    sign_up_with(redis_client, "al", {"region": "EU", "birth_year": year - 30})
    sign_up_with(redis_client, "bea", {"region": "EU", "birth_year": year - 70})  # 65+: too few to publish
    sign_up_with(redis_client, "cid", {"region": "EU"})
    service = recommender(redis_client)

    al, bea, cid = (service.recommend(user, k=3) for user in ("al", "bea", "cid"))

    assert (al.tier, [i.movie_id for i in al.items]) == (Tier.REGIONAL_POPULAR, [3, 5, 1])
    assert (bea.tier, [i.movie_id for i in bea.items]) == (Tier.REGIONAL_POPULAR, [2, 4, 1])
    assert ("regional_popular", "not published") in [(f.tier.value, f.reason) for f in bea.fallbacks]
    assert [i.movie_id for i in cid.items] == [2, 4, 1]


@pytest.mark.parametrize(("trending_weight", "first"), [(0.5, 5), (0.0, 3)])
def test_segments_without_region_blend_with_global_trending_at_the_published_weight(
    redis_client: redis.Redis, blobs: BlobStore, trending_weight: float, first: int
) -> None:
    year = time.gmtime().tm_year
    policy = PopularityPolicy("age_band", 50.0, trending_weight)
    publish_segmented(redis_client, blobs, policy, {"age=25-34": items(3, 2, 1, 4)})
    sign_up_with(redis_client, "dee", {"birth_year": year - 30})
    for n in range(50):
        engage(redis_client, f"fan{n}", 5, f"t-{n}")  # fans without a region: global counters only

    result = recommender(redis_client).recommend("dee", k=3)

    assert result.tier is Tier.REGIONAL_POPULAR
    assert result.items[0].movie_id == first


def test_a_publish_that_died_half_way_leaves_the_old_version_serving(
    redis_client: redis.Redis, blobs: BlobStore
) -> None:
    old = publish_version(redis_client, blobs)
    store = PublicationStore(redis_client)
    writer = store.begin("20991231T000000000Z", time.time())
    writer.put_popularity({keys.GLOBAL_SEGMENT: items(5, 4)})  # ...and the job dies here

    result = recommender(redis_client).recommend("eve", k=2)

    assert store.current_version() == old
    assert [i.movie_id for i in result.items] == [1, 2]
    new = publish_version(redis_client, blobs)
    assert not list(redis_client.scan_iter("mr:v:20991231T000000000Z:*")), "the next publish cleans up"
    assert redis_client.ttl(keys.popularity(old, keys.GLOBAL_SEGMENT)) > 0, "the old version expires"
    assert store.current_version() == new


@pytest.fixture
def fragile_redis(disposable_redis: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(disposable_redis.url, socket_timeout=0.05, socket_connect_timeout=0.05)
    yield client
    client.close()


def test_redis_dying_mid_test_falls_back_to_the_snapshot(
    fragile_redis: redis.Redis, disposable_redis: RedisServer, blobs: BlobStore
) -> None:
    publish_version(fragile_redis, blobs)
    service = recommender(fragile_redis)
    assert service.recommend("fay", k=2).tier is Tier.GLOBAL_POPULAR  # also warms the in-memory snapshot

    disposable_redis.stop()
    result = service.recommend("fay", k=2)

    assert result.tier is Tier.SNAPSHOT
    assert [i.movie_id for i in result.items] == [1, 2]
    assert result.fallbacks[0].reason == "store unavailable"


def test_the_bundled_snapshot_serves_a_cold_container_when_redis_is_down(
    fragile_redis: redis.Redis, disposable_redis: RedisServer, blobs: BlobStore, tmp_path: Path
) -> None:
    publish_version(fragile_redis, blobs)
    bundled = blobs.get("snapshots/popularity.json")
    assert bundled is not None
    path = tmp_path / "snapshot.json"
    path.write_bytes(bundled)
    disposable_redis.stop()

    result = recommender(fragile_redis, PopularitySnapshot.load(path)).recommend("gus", k=3, genre="Horror")

    assert result.tier is Tier.SNAPSHOT
    assert [i.movie_id for i in result.items] == [1, 5]


def test_after_a_redis_error_calls_fail_fast_for_a_second(
    fragile_redis: redis.Redis, disposable_redis: RedisServer
) -> None:
    now = [100.0]
    store = ServingStore(fragile_redis, clock=lambda: now[0])
    disposable_redis.stop()
    with pytest.raises(StoreUnavailableError):
        store.current_version()

    disposable_redis.start()
    now[0] += 0.5
    with pytest.raises(StoreUnavailableError, match="failing fast"):
        store.current_version()  # Redis is back, but the container does not try again yet
    now[0] += 1.0
    assert store.current_version() is None  # answers again: nothing is published there


def test_reconnect_rebuilds_the_client(redis_client: redis.Redis, redis_url: str, blobs: BlobStore) -> None:
    """What the SnapStart after-restore hook calls: a new client, so a rotated AUTH token is read."""
    version = publish_version(redis_client, blobs, {"bo": items(5, 3, 1, 2)})
    built: list[redis.Redis] = []

    def fresh_client() -> redis.Redis:
        built.append(redis.Redis.from_url(redis_url, client_name="after-restore"))
        return built[-1]

    before = redis.Redis.from_url(redis_url, client_name="before-restore")
    service = Recommender(ServingStore(before, reconnect_with=fresh_client), PopularitySnapshot(), POLICY)
    service.recommend("bo", k=2)
    service.reconnect()
    result = service.recommend("bo", k=2)

    assert len(built) == 1
    assert (result.tier, service.published_version()) == (Tier.PERSONALIZED, version)
    connected = {c["name"] for c in redis_client.client_list()}
    assert "after-restore" in connected
    assert "before-restore" not in connected, "every read goes through the new client, the user's too"
