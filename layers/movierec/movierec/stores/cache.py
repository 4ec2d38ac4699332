"""The Redis connection: one client per container, with short timeouts so a sick cache fails fast; and
Lua scripts run by SHA-1.

With ``REDIS_CLUSTER`` the client is a :class:`redis.cluster.RedisCluster` (ElastiCache Serverless, and
replication groups with cluster mode enabled): it learns the slot map from the node in ``REDIS_URL``,
sends each command to the master that owns its key, and splits a non-transactional pipeline by node.
The adapters stay cluster-safe by construction: every script's keys share one hash tag (``keys.py``),
nothing uses MULTI, and ``SCAN`` walks every master (``RedisCluster.scan_iter``).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import redis
from redis.client import Pipeline
from redis.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException

from movierec.config import RedisSettings
from movierec.stores.secrets import read_secret

RedisClient: TypeAlias = redis.Redis | RedisCluster
"""What the adapters take: a single node (or a cluster-mode-disabled primary endpoint) or a cluster."""

RedisPipeline: TypeAlias = Pipeline | ClusterPipeline

REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)
"""What a failing cache raises. redis-py's cluster client also raises ``RedisClusterException``, which
is not a ``RedisError`` (a slot no master covers, a cluster it cannot reach): the adapters catch both."""


def connect_redis(settings: RedisSettings, *, fresh_secret: bool = False) -> RedisClient:
    secret = settings.redis_auth_secret_arn
    password = read_secret(secret, fresh=fresh_secret) if secret else None
    options: dict[str, Any] = {
        "password": password,
        "socket_connect_timeout": settings.redis_connect_timeout_ms / 1000,
        "socket_timeout": settings.redis_socket_timeout_ms / 1000,
        "health_check_interval": 30,
        "decode_responses": False,
    }
    if settings.redis_cluster:
        return DeferredRedisCluster(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


class DeferredRedisCluster(RedisCluster):
    """A cluster client that may be built while the cluster is unreachable, as ``redis.Redis`` may.

    ``RedisCluster`` reads the slot map when it is constructed and raises when no node answers: a
    container started during a cache outage would fail its init, where a single-node client connects on
    its first command, fails that one (the adapters' store error) and recovers by itself. This one
    retries the discovery on each command until it succeeds, so init never needs the cache.

    ``dynamic_startup_nodes=False`` keeps the configured endpoint (ElastiCache's configuration or
    serverless endpoint, a DNS name) as the node every later rediscovery starts from, rather than the
    node addresses the first ``CLUSTER SLOTS`` listed, which a replacement may retire.
    """

    def __init__(self, url: str, **options: Any) -> None:
        self._discovery = (url, {"dynamic_startup_nodes": False, **options})
        self._discovered = False
        self._discovering = False
        with contextlib.suppress(*REDIS_ERRORS):
            self._discover()

    def _discover(self) -> None:
        if self._discovered or self._discovering:  # construction itself runs commands (COMMAND)
            return
        url, options = self._discovery
        self._discovering = True
        try:
            super().__init__(url=url, **options)
        finally:
            self._discovering = False
        self._discovered = True

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        self._discover()
        return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        self._discover()
        pipe: ClusterPipeline = super().pipeline(transaction, shard_hint)  # type: ignore[no-untyped-call]
        return pipe

    def disconnect_connection_pools(self) -> None:
        if self._discovered:
            super().disconnect_connection_pools()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        if self._discovered:
            super().close()


def disconnect(client: RedisClient) -> None:
    """Close every pooled connection (a cluster client holds one pool per node); the next command
    connects afresh."""
    if isinstance(client, RedisCluster):
        client.disconnect_connection_pools()  # type: ignore[no-untyped-call]
    else:
        client.connection_pool.disconnect()


def queue_evalsha(
    pipe: RedisPipeline, sha: str, keys: Sequence[str], args: Sequence[str | int | float]
) -> None:
    """Queue ``EVALSHA`` on a pipeline of either kind. redis-py's cluster pipeline blocks its
    ``evalsha`` method (it cannot know the keys share a slot); the raw command routes by the script's
    keys, and a script whose keys span slots fails before anything is sent."""
    pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class LuaScript:
    """A script sent by SHA-1 (``EVALSHA``): no ``SCRIPT EXISTS`` round trip first, as redis-py's
    ``Script`` objects send in pipelines, and no client bound to it, so it follows a reconnect. A node
    that lost it (restart, failover) answers NOSCRIPT: a call loads it and runs again; a pipeline's
    owner does the same for the calls that met it (stores/realtime.py). On a cluster ``SCRIPT LOAD``
    goes to every master, so the node that owns the keys has it whichever that is."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())

    def __call__(self, client: RedisClient, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)
