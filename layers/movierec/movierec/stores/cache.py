"""The Redis connection: one client per container, with short timeouts so a sick cache fails fast; and
Lua scripts run by SHA-1."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError

from movierec.config import RedisSettings
from movierec.stores.secrets import read_secret


def connect_redis(settings: RedisSettings, *, fresh_secret: bool = False) -> redis.Redis:
    secret = settings.redis_auth_secret_arn
    password = read_secret(secret, fresh=fresh_secret) if secret else None
    return redis.Redis.from_url(
        settings.redis_url,
        password=password,
        socket_connect_timeout=settings.redis_connect_timeout_ms / 1000,
        socket_timeout=settings.redis_socket_timeout_ms / 1000,
        health_check_interval=30,
        decode_responses=False,
    )


@dataclass(frozen=True)
class LuaScript:
    """A script sent by SHA-1 (``EVALSHA``): no ``SCRIPT EXISTS`` round trip first, as redis-py's
    ``Script`` objects send in pipelines, and no client bound to it, so it follows a reconnect. A node
    that lost it (restart, failover) answers NOSCRIPT: a call loads it and runs again; a pipeline's
    owner does the same for the calls that met it (stores/realtime.py)."""

    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> LuaScript:
        return cls(source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())

    def __call__(self, client: redis.Redis, keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self.sha, len(keys), *keys, *args)
