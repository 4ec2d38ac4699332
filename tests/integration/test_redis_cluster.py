"""Ingest and the rebuild against a real Redis Cluster of three masters (ElastiCache cluster mode and
Serverless speak its protocol): the state they leave is, key by key, the state a single Redis holds
after the same batches, and it is spread over every master.

Each test runs the same work twice, over one MongoDB database and a single Redis, and over another
database and the cluster, and compares. The recommend path and publication are in
``test_redis_cluster_serving.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
import redis
from redis.cluster import ClusterNode, RedisCluster

from infra.local.servers import RedisClusterServer
from infra.ops.rebuild import main
from movierec import keys
from movierec.stores import aws
from tests.integration.ingest_harness import APPLIED_TTL_SECONDS, RECENT_LENGTH, Harness, build_harness
from tests.integration.test_rebuild import USERS, ingest_all, varied_events
from tests.support import event_payload


@pytest.fixture
def single(mongo_uri: str, mongo_database_name: str, redis_url: str, aws_reset: str) -> Harness:
    return build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)


@pytest.fixture
def cluster(
    mongo_uri: str, mongo_database_name: str, redis_cluster_url: str, aws_reset: str
) -> Iterator[Harness]:
    database = f"{mongo_database_name}_c"  # the same events once more: a database of its own
    harness = build_harness(
        mongo_uri, database, redis_cluster_url, aws_endpoint=aws_reset, redis_cluster=True
    )
    yield harness
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_uri)
    try:
        client.drop_database(database)
    finally:
        client.close()


def cluster_client(harness: Harness) -> RedisCluster:
    assert isinstance(harness.redis, RedisCluster)
    return harness.redis


def every_key(harness: Harness) -> list[str]:
    """Every key, the applied markers too (``Harness.state`` leaves those out)."""
    return sorted(bytes(key).decode() for key in harness.redis.scan_iter("*"))


def master_of(client: RedisCluster, name: str) -> ClusterNode:
    node: ClusterNode = client.get_node_from_key(name)  # type: ignore[no-untyped-call]
    return node


def master_names(client: RedisCluster) -> set[str]:
    primaries: list[ClusterNode] = client.get_primaries()  # type: ignore[no-untyped-call]
    return {node.name for node in primaries}


def masters_holding(client: RedisCluster, names: list[str]) -> set[str]:
    return {master_of(client, name).name for name in names}


def assert_same_state(got: Harness, expected: Harness) -> None:
    """Key by key first (a failure names the key), then the whole state, MongoDB's documents too."""
    mine, theirs = got.state(), expected.state()
    assert sorted(mine["cache"]) == sorted(theirs["cache"])
    for name, value in theirs["cache"].items():
        assert mine["cache"][name] == value, name
    assert mine == theirs
    assert every_key(got) == every_key(expected)


def test_the_local_cluster_has_three_masters_covering_every_slot(redis_cluster_client: RedisCluster) -> None:
    assert len(master_names(redis_cluster_client)) == 3
    info = redis_cluster_client.cluster_info()
    assert (info["cluster_state"], int(info["cluster_slots_ok"]), int(info["cluster_size"])) == (
        "ok",
        16384,
        3,
    )


def test_a_cluster_server_stops_cleanly_and_its_nodes_are_gone() -> None:
    server = RedisClusterServer(masters=3).start()
    assert server.cluster_ok()
    server.close()
    assert not server.running
    assert not server.cluster_ok()


def test_ingest_leaves_the_same_state_on_a_cluster_as_on_one_node(single: Harness, cluster: Harness) -> None:
    payloads = varied_events()
    for harness in (single, cluster):
        ingest_all(harness, payloads)

    assert_same_state(cluster, single)
    names = every_key(cluster)
    assert masters_holding(cluster_client(cluster), names) == master_names(cluster_client(cluster))
    assert any(name.startswith("mr:trend:") for name in names)

    for harness in (single, cluster):  # a redelivery of everything: the applied markers hold on each master
        ingest_all(harness, payloads)
    assert_same_state(cluster, single)


def test_a_master_that_lost_its_scripts_is_reloaded_and_nothing_counts_twice(
    single: Harness, cluster: Harness
) -> None:
    payloads = varied_events()
    half = len(payloads) // 2
    for harness in (single, cluster):
        ingest_all(harness, payloads[:half])
    client = cluster_client(cluster)
    node = client.get_redis_connection(master_of(client, keys.seen("u1")))
    assert node.script_flush()  # as a restarted or failed-over master would be: no scripts, there only
    loads_before = script_loads(node)

    for harness in (single, cluster):
        ingest_all(harness, payloads[half:])

    assert script_loads(node) > loads_before  # it answered NOSCRIPT, and ingest loaded them again
    assert_same_state(cluster, single)


def script_loads(node: redis.Redis) -> int:
    """How many SCRIPT commands (LOAD, FLUSH) a node has run."""
    stats: dict[str, Any] = node.info("commandstats")
    return int(stats.get("cmdstat_script", {}).get("calls", 0))


def test_a_cluster_that_lost_everything_is_rebuilt_exactly(single: Harness, cluster: Harness) -> None:
    payloads = varied_events()
    for harness in (single, cluster):
        ingest_all(harness, payloads)
    expected = cluster.state()
    cluster.redis.flushall()  # every master

    summary = cluster.rebuild_realtime(page_size=33)

    assert (summary.profiles, summary.events) == (USERS + 4, len(payloads) - 80)
    assert cluster.state() == expected
    assert_same_state(cluster, single)


def test_a_partial_loss_recounts_trending_across_every_master(single: Harness, cluster: Harness) -> None:
    payloads = varied_events()
    for harness in (single, cluster):
        ingest_all(harness, payloads)
    doomed = every_key(single)[::3]  # the same third of the keys on both, markers and buckets among them
    assert any(":applied" in k for k in doomed)
    assert any(k.startswith("mr:trend:") for k in doomed)
    assert len(masters_holding(cluster_client(cluster), doomed)) == 3
    summaries = []
    for harness in (single, cluster):
        harness.redis.delete(*doomed)  # the cluster client splits a multi-key DEL by slot
        summaries.append(harness.rebuild_realtime(recount_trending=True))  # SCAN on each master

    assert summaries[0] == summaries[1]
    assert summaries[1].counting_keys_dropped > 0
    assert_same_state(cluster, single)


def test_the_rebuild_command_speaks_to_a_cluster_with_redis_cluster_set(
    cluster: Harness,
    mongo_uri: str,
    redis_cluster_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_all(cluster, varied_events())
    ingest_all(cluster, [event_payload("signup", 9_000, user_id="late", region="EU")])
    # The command's clock is the wall clock: these 2026 test events' trending buckets are too old to keep.
    untimed = {k: v for k, v in cluster.state()["cache"].items() if not k.startswith("mr:trend:")}
    cluster.redis.flushall()
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", cluster.mongo.name)
    monkeypatch.setenv("REDIS_URL", redis_cluster_url)
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", cluster.queue_url)
    monkeypatch.setenv("DEAD_LETTER_BUCKET", "movierec-test-artifacts")
    monkeypatch.setenv("RECENT_LIST_LENGTH", str(RECENT_LENGTH))
    monkeypatch.setenv("APPLIED_MARKER_TTL_SECONDS", str(APPLIED_TTL_SECONDS))
    aws.client.cache_clear()
    capsys.readouterr()
    try:
        assert main(["--page-size", "50", "--recount-trending"]) == 0
    finally:
        aws.client.cache_clear()

    printed = json.loads(capsys.readouterr().out)
    assert printed["events"] == len(varied_events()) - 80 + 1
    assert {k: v for k, v in cluster.state()["cache"].items() if not k.startswith("mr:trend:")} == untimed
