"""Versioned publication in Redis: write a whole new namespace, then switch one pointer.

Readers resolve ``keys.CURRENT_VERSION`` first. A publish that dies half-way leaves its namespace
unreferenced (registered as pending) and the previous version serving; the next publish deletes it.
Superseded versions expire after a grace period so in-flight readers finish undisturbed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from movierec import keys
from movierec.publication import Item, ItemEncoder, Manifest, MovieInfo, encode_movie_info
from movierec.stores.cache import RedisClient

PENDING_VERSIONS = f"{keys.PREFIX}:published:pending"
PIPELINE_CHUNK = 1_000


class PublicationWriter:
    def __init__(self, client: RedisClient, version: str) -> None:
        self._redis = client
        self.version = version
        self._encoder = ItemEncoder()  # one per publication: each movie's metadata is encoded once

    def put_popularity(self, lists: Mapping[str, list[Item]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for segment, items in lists.items():
            pipe.set(keys.popularity(self.version, segment), self._encoder.encode(items))
        pipe.execute()

    def put_recommendations(self, lists: Iterable[tuple[str, list[Item]]]) -> int:
        written = 0
        pipe = self._redis.pipeline(transaction=False)
        for user_id, items in lists:
            pipe.set(keys.recommendations(self.version, user_id), self._encoder.encode(items))
            written += 1
            if len(pipe) >= PIPELINE_CHUNK:
                pipe.execute()
        if len(pipe):
            pipe.execute()
        return written

    def put_catalogue(self, movies: Mapping[int, MovieInfo]) -> None:
        """Fill in movies the live catalogue lacks; ingest's newer metadata is never overwritten."""
        pipe = self._redis.pipeline(transaction=False)
        for movie_id, info in movies.items():
            pipe.hsetnx(keys.MOVIES, str(movie_id), encode_movie_info(info))
            if len(pipe) >= PIPELINE_CHUNK:
                pipe.execute()
        if len(pipe):
            pipe.execute()


class PublicationStore:
    def __init__(self, client: RedisClient) -> None:
        self._redis = client

    def begin(self, version: str, now: float) -> PublicationWriter:
        self._redis.zadd(PENDING_VERSIONS, {version: now})
        return PublicationWriter(self._redis, version)

    def commit(
        self, writer: PublicationWriter, manifest: Manifest, grace_seconds: int, now: float
    ) -> str | None:
        """Switch readers to the new version; returns the version it replaced."""
        self._redis.set(keys.version_manifest(writer.version), manifest.to_json())
        previous = self._redis.set(keys.CURRENT_VERSION, writer.version, get=True)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(keys.PUBLISHED_VERSIONS, {writer.version: now})
        pipe.zrem(PENDING_VERSIONS, writer.version)
        pipe.execute()
        old = previous.decode() if isinstance(previous, bytes) else None
        if old and old != writer.version and old not in self.pinned().values():
            self._expire_namespace(old, grace_seconds)
        self._delete_abandoned(keep=writer.version)
        return old

    def commit_challenger(
        self, writer: PublicationWriter, manifest: Manifest, variant: str, grace_seconds: int, now: float
    ) -> str | None:
        """Make the new version live beside the current one, pinned under ``variant`` (readers of the
        current pointer are unaffected); returns the version the variant served before (it expires)."""
        self._redis.set(keys.version_manifest(writer.version), manifest.to_json())
        old = self.pin(variant, writer.version)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(keys.PUBLISHED_VERSIONS, {writer.version: now})
        pipe.zrem(PENDING_VERSIONS, writer.version)
        pipe.execute()
        if old and old != writer.version and old != self.current_version():
            self._expire_namespace(old, grace_seconds)
        self._delete_abandoned(keep=writer.version)
        return old

    def pin(self, variant: str, version: str) -> str | None:
        """Keep ``version`` live under ``variant`` (its keys' expiry removed); the version pinned before."""
        keys.version_manifest(version)  # refuses a version id that cannot be a namespace
        previous = self._redis.hget(keys.PINNED_VERSIONS, variant)
        self._redis.hset(keys.PINNED_VERSIONS, variant, version)
        pipe = self._redis.pipeline(transaction=False)
        for key in self._namespace_keys(version):
            pipe.persist(key)
            if len(pipe) >= PIPELINE_CHUNK:
                pipe.execute()
        if len(pipe):
            pipe.execute()
        return previous.decode() if isinstance(previous, bytes) else None

    def unpin(self, variant: str, grace_seconds: int) -> None:
        """End a variant's hold: its version expires after the grace period unless it is current."""
        previous = self._redis.hget(keys.PINNED_VERSIONS, variant)
        self._redis.hdel(keys.PINNED_VERSIONS, variant)
        version = previous.decode() if isinstance(previous, bytes) else None
        if version and version != self.current_version() and version not in self.pinned().values():
            self._expire_namespace(version, grace_seconds)

    def pinned(self) -> dict[str, str]:
        raw = self._redis.hgetall(keys.PINNED_VERSIONS)
        return {_text(k): _text(v) for k, v in raw.items()}

    def current_version(self) -> str | None:
        raw = self._redis.get(keys.CURRENT_VERSION)
        return raw.decode() if isinstance(raw, bytes) else None

    def manifest(self, version: str) -> Manifest | None:
        raw = self._redis.get(keys.version_manifest(version))
        return Manifest.from_json(raw) if isinstance(raw, bytes) else None

    def _namespace_keys(self, version: str) -> Iterable[Any]:
        return self._redis.scan_iter(match=keys.version_namespace(version), count=1_000)

    def _expire_namespace(self, version: str, grace_seconds: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for key in self._namespace_keys(version):
            pipe.expire(key, max(1, grace_seconds))
            if len(pipe) >= PIPELINE_CHUNK:
                pipe.execute()
        if len(pipe):
            pipe.execute()

    def _delete_abandoned(self, keep: str) -> None:
        for raw in self._redis.zrange(PENDING_VERSIONS, 0, -1):
            version = raw.decode() if isinstance(raw, bytes) else str(raw)
            if version == keep:
                continue
            for key in self._namespace_keys(version):
                self._redis.unlink(key)
            self._redis.zrem(PENDING_VERSIONS, version)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
