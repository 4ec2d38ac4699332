"""Publication and the recommend path against a real three-master Redis Cluster: the training job's
``publish`` writes the same keys as on a single Redis, and the recommender the function wires
(``build_recommender`` with ``REDIS_CLUSTER``) gives the same answers from every tier: the cached
list, online scoring (a known user, a stale list, a fold-in, its cached online list), regional and
global popularity, similar movies. A cluster down at init, as for a single node, costs no init.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import boto3
import pytest
from redis.cluster import RedisCluster

from infra.local.servers import RedisClusterServer
from movierec import keys
from movierec.artifact import load
from movierec.config import RecommendSettings, RedisSettings
from movierec.contracts import Engagement, ProfileChange
from movierec.data.dataset import Dataset
from movierec.errors import StoreUnavailableError
from movierec.history import HISTORY_LENGTH
from movierec.publication import Item, MovieInfo
from movierec.recommend.service import Recommendations, Recommender, Tier
from movierec.recommend.wiring import build_recommender
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import RedisClient, connect_redis
from movierec.stores.realtime import RealtimeState, TrendingPolicy
from movierec.stores.serving import ServingStore
from tests.integration.test_online import catalogue, trained  # noqa: F401  (fixture)
from training_job.fit import FitResult
from training_job.publishing import publish
from training_job.stores.publication import PENDING_VERSIONS, PublicationStore

BUCKET = "artifacts"
TRENDING = TrendingPolicy(3600, 24)
Trained = tuple[Dataset, FitResult]


@pytest.fixture
def blobs(aws_reset: str) -> BlobStore:
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return BlobStore(BUCKET)


@pytest.fixture
def single_client(redis_url: str) -> Iterator[RedisClient]:
    client = connect_redis(settings(redis_url, cluster=False))
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def cluster_client(redis_cluster_client: RedisCluster, redis_cluster_url: str) -> Iterator[RedisClient]:
    """The client the product builds (``connect_redis``), on the flushed session cluster."""
    client = connect_redis(settings(redis_cluster_url, cluster=True))
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


def settings(url: str, *, cluster: bool) -> RecommendSettings:
    # A generous deadline and timeouts: the tiers must not fall through on a busy machine, or the two
    # backends could answer from different tiers.
    return RecommendSettings(
        redis_url=url,
        redis_cluster=cluster,
        redis_connect_timeout_ms=2_000,
        redis_socket_timeout_ms=2_000,
        artifact_bucket=BUCKET,
        deadline_ms=10_000,
    )


def items(info: dict[int, MovieInfo], movie_ids: list[int]) -> list[Item]:
    return [Item(m, 1.0 / rank, *astuple(info[m])) for rank, m in enumerate(movie_ids, start=1)]


class World:
    """What both backends are given: a published model, lists and popularity; sign-ups; engagements
    after the data cut-off (a stale list, a newcomer) at one fixed moment."""

    def __init__(self, data: Dataset, result: FitResult) -> None:
        self.data, self.result = data, result
        self.info = catalogue(data)
        self.ranked = sorted(self.info)
        self.users = load(result.artifact_bytes).metadata.user_ids
        self.at = time.time()
        self.genre = self.info[self.ranked[100]].genres[0]

    def populate(self, client: RedisClient, blobs: BlobStore) -> str:
        uri = blobs.put(f"models/{self.result.model_version}/model.npz", self.result.artifact_bytes)
        popularity = {
            keys.GLOBAL_SEGMENT: items(self.info, self.ranked[:50]),
            keys.region_segment("eu"): items(self.info, self.ranked[50:100]),
        }
        personal = {
            self.users[1]: items(self.info, self.ranked[100:130]),
            self.users[2]: items(self.info, self.ranked[130:140]),
        }
        version = publish(
            PublicationStore(client),
            blobs,
            popularity,
            iter(personal.items()),
            self.info,
            data_cutoff=self.at - 60,
            grace_seconds=60,
            model_version=self.result.model_version,
            artifact_uri=uri,
        ).version
        watched = [Engagement(f"n-{m}", "newcomer", m, self.at, "watch") for m in self.ranked[:4]]
        watched.append(Engagement("stale-1", self.users[2], self.ranked[200], self.at, "watch"))
        signups = [ProfileChange(u, {"region": "EU"}, "v1") for u in ("visitor-eu", self.users[3])]
        RealtimeState(client, recent_length=HISTORY_LENGTH, applied_ttl_seconds=3600).apply(
            watched, signups, [], TRENDING, self.at
        )
        return version

    def ask(self, recommender: Recommender) -> dict[str, Recommendations]:
        u = self.users
        return {
            "cached list": recommender.recommend(u[1], k=5),
            "cached list, one genre": recommender.recommend(u[1], k=3, genre=self.genre),
            "online": recommender.recommend(u[0], k=5),
            "online, its cached list": recommender.recommend(u[0], k=5),
            "stale list, rescored": recommender.recommend(u[2], k=5),
            "fold-in": recommender.recommend("newcomer", k=5),
            "known user in a region": recommender.recommend(u[3], k=5),
            "regional popularity": recommender.recommend("visitor-eu", k=5),
            "global popularity": recommender.recommend("stranger", k=5),
            "anonymous, a region": recommender.popular("eu", k=5),
            "anonymous": recommender.popular(None, k=5),
        }


def answer(result: Recommendations, version: str) -> dict[str, Any]:
    """A recommendation without what differs per call (its id, timings) or per backend (the version
    id: each publication mints its own)."""
    return {
        "tier": result.tier,
        "items": [(i.movie_id, round(i.score, 9), i.title) for i in result.items],
        "fallbacks": [(f.tier, f.reason) for f in result.fallbacks],
        "published": result.model_version == version,
    }


def contents(client: RedisClient, version: str) -> dict[str, Any]:
    """Every key and its value, the version id in names replaced; the manifest without its time."""
    dump: dict[str, Any] = {}
    for raw in client.scan_iter("*"):
        name = bytes(raw).decode()
        kind = client.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        value: Any
        if kind == "set":
            value = sorted(client.smembers(name))
        elif kind == "zset":
            value = client.zrange(name, 0, -1, withscores=True)
        elif kind == "hash":
            value = dict(sorted(client.hgetall(name).items()))
        elif kind == "list":
            value = client.lrange(name, 0, -1)
        else:
            value = client.get(name)
        if name.endswith(":manifest"):
            value = {k: v for k, v in json.loads(value).items() if k not in ("version", "created_at")}
        if name == keys.CURRENT_VERSION:
            value = value == version.encode()
        if name in (keys.PUBLISHED_VERSIONS, PENDING_VERSIONS):
            value = [member == version.encode() for member, _ in value]
        dump[name.replace(version, "<version>")] = value
    return dump


def test_publication_and_every_tier_answer_the_same_on_a_cluster(
    single_client: RedisClient,
    cluster_client: RedisClient,
    blobs: BlobStore,
    trained: Trained,  # noqa: F811
    tmp_path: Path,
) -> None:
    world = World(*trained)
    versions = [world.populate(client, blobs) for client in (single_client, cluster_client)]
    published = [contents(c, v) for c, v in zip((single_client, cluster_client), versions, strict=True)]
    assert sorted(published[1]) == sorted(published[0])
    for name, value in published[0].items():
        assert published[1][name] == value, name
    assert_spread_over_every_master(
        cluster_client, [k.replace("<version>", versions[1]) for k in published[1]]
    )

    recommenders = [
        build_recommender(settings(url, cluster=cluster), tmp_path)
        for url, cluster in ((url_of(single_client), False), (url_of(cluster_client), True))
    ]
    answers = [world.ask(r) for r in recommenders]

    on_cluster = {name: answer(result, versions[1]) for name, result in answers[1].items()}
    on_single = {name: answer(result, versions[0]) for name, result in answers[0].items()}
    for name, expected in on_single.items():
        assert on_cluster[name] == expected, name
    tiers = {name: result.tier for name, result in answers[1].items()}
    assert tiers == {
        "cached list": Tier.PERSONALIZED,
        "cached list, one genre": Tier.PERSONALIZED,
        "online": Tier.ONLINE,
        "online, its cached list": Tier.ONLINE,
        "stale list, rescored": Tier.ONLINE,
        "fold-in": Tier.ONLINE,
        "known user in a region": Tier.ONLINE,
        "regional popularity": Tier.REGIONAL_POPULAR,
        "global popularity": Tier.GLOBAL_POPULAR,
        "anonymous, a region": Tier.REGIONAL_POPULAR,
        "anonymous": Tier.GLOBAL_POPULAR,
    }
    assert ("personalized", "stale") in [
        (f.tier.value, f.reason) for f in answers[1]["stale list, rescored"].fallbacks
    ]
    similar = [r.similar(world.ranked[0], k=5) for r in recommenders]
    assert similar[0]
    assert similar[1] == similar[0]

    # The online lists the recommend path wrote back are the same, key by key, too.
    assert contents(cluster_client, versions[1]) == contents(single_client, versions[0])
    recommenders[1].reconnect()  # fresh connections to every master
    assert answer(recommenders[1].recommend(world.users[1], k=5), versions[1]) == on_single["cached list"]


def url_of(client: RedisClient) -> str:
    if isinstance(client, RedisCluster):
        node = client.get_default_node()  # type: ignore[no-untyped-call]
        return f"redis://{node.host}:{node.port}/0"
    kwargs = client.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/0"


def assert_spread_over_every_master(client: RedisClient, names: list[str]) -> None:
    assert isinstance(client, RedisCluster)
    primaries = {node.name for node in client.get_primaries()}  # type: ignore[no-untyped-call]
    holding = {client.get_node_from_key(name).name for name in names}  # type: ignore[no-untyped-call]
    assert holding == primaries


def test_a_cluster_down_at_init_costs_no_init_and_the_same_client_recovers(
    blobs: BlobStore, tmp_path: Path
) -> None:
    popular = [Item(2, 0.7, "Heat", ("Crime",), 1995), Item(1, 0.5, "Alien", ("Horror",), 1979)]
    info = {1: MovieInfo("Alien", ("Horror",), 1979), 2: MovieInfo("Heat", ("Crime",), 1995)}
    with RedisClusterServer(masters=3) as server:
        version = publish(
            PublicationStore(connect_redis(RedisSettings(redis_url=server.url, redis_cluster=True))),
            blobs,
            {keys.GLOBAL_SEGMENT: popular},
            iter([]),
            info,
            data_cutoff=time.time(),
            grace_seconds=60,
        ).version  # it writes the S3 snapshot too
        server.stop()

        recommender = build_recommender(settings(server.url, cluster=True), tmp_path)  # no cluster to see
        cold = recommender.recommend("ana", k=2)
        assert (cold.tier, [i.movie_id for i in cold.items], cold.model_version) == (
            Tier.SNAPSHOT,
            [2, 1],
            version,
        )

        client = connect_redis(RedisSettings(redis_url=server.url, redis_cluster=True))
        state = RealtimeState(client, recent_length=HISTORY_LENGTH, applied_ttl_seconds=3600)
        engagement = [Engagement("e1", "ana", 1, time.time(), "watch")]
        with pytest.raises(StoreUnavailableError):
            state.apply(engagement, [], [], TRENDING, time.time())

        server.start()  # empty again: no persistence; the same client discovers the slot map now
        state.apply(engagement, [], [], TRENDING, time.time())
        assert ServingStore(client).read_user("ana").seen == frozenset({1})
