"""The Redis connection: one client per container, with short timeouts so a sick cache fails fast; and
Lua scripts run by SHA-1.

With ``REDIS_CLUSTER`` the client is a :class:`redis.cluster.RedisCluster` (ElastiCache Serverless, and
replication groups with cluster mode enabled): it learns the slot map from the node in ``REDIS_URL``,
sends each command to the master that owns its key, and splits a non-transactional pipeline by node.
The adapters stay cluster-safe by construction: every script's keys share one hash tag (``keys.py``),
nothing uses MULTI, and ``SCAN`` walks every master (``RedisCluster.scan_iter``).
"""

from __future__ import annotations

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
        return RedisCluster.from_url(settings.redis_url, **options)
    return redis.Redis.from_url(settings.redis_url, **options)


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
