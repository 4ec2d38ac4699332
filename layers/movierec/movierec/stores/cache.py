"""The Redis connection: one client per container, with short timeouts so a sick cache fails fast."""

from __future__ import annotations

import redis

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
