"""Redis reads for the recommend path: one call per request reads the user (``read_user``).

The current version, its manifest and the retired movies change rarely, so they are cached in-process
for a second (``publication``); popularity lists are cached a little longer by their reader
(``recommend/tiers.py``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from movierec import keys
from movierec.errors import StoreUnavailableError
from movierec.history import HISTORY_LENGTH
from movierec.publication import (
    Item,
    LazyItems,
    Manifest,
    MovieInfo,
    decode_items,
    decode_movie_info,
    encode_items,
)
from movierec.stores.cache import REDIS_ERRORS, LuaScript, RedisClient, disconnect

VERSION_CACHE_SECONDS = 1.0
MANIFESTS_KEPT = 4
RETIRED_CACHE_SECONDS = 1.0
"""Recent engagements read for online fold-in."""
NEVER_STALE = 1e300  # the data cutoff when no manifest says otherwise
SEEN_READ_WHOLE = 500
"""A seen set up to this size is read whole on the cached path (cheaper than looking up ~150 listed
movies one by one); a larger one only for the movies in the cached lists."""
FAIL_FAST_SECONDS = 1.0
"""After a Redis error, calls fail at once for this long: a sick cache costs one timeout per second
per container, not one per request, so every request still answers inside its deadline."""


@dataclass(frozen=True)
class Publication:
    """What the training job published last: its version (None before the first), manifest and the
    movies retired since."""

    version: str | None
    manifest: Manifest | None
    retired: frozenset[int] = frozenset()


@dataclass(frozen=True)
class UserSnapshot:
    """What the tiers know about one user for one request.

    ``read_user`` reads it in one command. When a cached list looks usable it reads only what the cached
    tiers need (``complete`` False: no recent movies or profile, and for a heavy user only the lists'
    seen movies); ``ServingStore.complete`` reads the rest, for the tiers below, once.
    """

    publication: Publication
    precomputed: Sequence[Item] | None  # lazily decoded: the cached path reads ~k of ~100 rows
    precomputed_stale: bool  # engaged since the data cutoff: the list was dropped as stale
    online: Sequence[Item] | None
    seen: frozenset[int]  # when not complete: at least the cached lists' movies the user has seen
    complete: bool
    recent: list[int] = field(default_factory=list)  # newest first
    recent_times: list[float] = field(default_factory=list)  # each one's latest engagement, epoch seconds
    profile: dict[str, str] = field(default_factory=dict)  # sign-up fields: region, birth_year, ...

    @classmethod
    def anonymous(cls, publication: Publication) -> UserSnapshot:
        return cls(publication, None, False, None, frozenset(), complete=True)


_READ_USER = LuaScript.of(r"""
-- KEYS: seen, stale, recent, profile[, recommendations, online].
-- ARGV: recent_n, the lists' data cutoff, the largest seen set read whole when a cached list is usable.
-- Returns {seen, precomputed_stale, precomputed, online, recent, profile}.
-- Staleness is decided here, once: a precomputed list older than the user's latest engagement is not
-- returned. When no cached list is left, recent movies and the profile come along (the lower tiers
-- need them). When one is and the user's seen set is large (a heavy user's holds thousands, and reading
-- it whole would dominate the cached path), `seen` holds only the lists' movies the user has seen:
-- SMISMEMBER on the ids that start the lists' lines.
local precomputed, online = false, false
if #KEYS == 6 then
  precomputed = redis.call('GET', KEYS[5])
  online = redis.call('GET', KEYS[6])
end
local latest = redis.call('GET', KEYS[2])
local stale = 0
if precomputed and latest and tonumber(latest) > tonumber(ARGV[2]) then
  precomputed, stale = false, 1
end
if not precomputed and not online then
  return {
    redis.call('SMEMBERS', KEYS[1]), stale, false, false,
    redis.call('ZREVRANGE', KEYS[3], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES'), redis.call('HGETALL', KEYS[4]),
  }
end
local lists = {}
if precomputed then lists[#lists + 1] = precomputed end
if online then lists[#lists + 1] = online end
local line_per_row = true
for _, list in ipairs(lists) do
  if not string.match(list, '^%[%d') then line_per_row = false end  -- format 1: one JSON array
end
if not line_per_row or redis.call('SCARD', KEYS[1]) <= tonumber(ARGV[3]) then
  return {redis.call('SMEMBERS', KEYS[1]), stale, precomputed, online, false, false}
end
local ids = {}
for _, list in ipairs(lists) do
  ids[#ids + 1] = string.match(list, '^%[(%d+),')
  for id in string.gmatch(list, '\n%[(%d+),') do ids[#ids + 1] = id end
end
local flags = redis.call('SMISMEMBER', KEYS[1], unpack(ids))
local seen = {}
for i = 1, #ids do
  if flags[i] == 1 then seen[#seen + 1] = ids[i] end
end
return {seen, stale, precomputed, online, false, false}
""")


class ServingStore:
    def __init__(
        self,
        client: RedisClient,
        clock: Callable[[], float] = time.monotonic,
        reconnect_with: Callable[[], RedisClient] | None = None,
    ) -> None:
        self._redis = client
        self._reconnect_with = reconnect_with
        self._clock = clock
        self._version: tuple[float, str | None] | None = None
        self._pinned: dict[str, tuple[float, str | None]] = {}  # variant -> (read at, version)
        self._manifests: dict[str, Manifest] = {}
        self._retired: tuple[float, frozenset[int]] | None = None
        self._failed_at: float | None = None

    def reconnect(self) -> None:
        """Fresh connections (and a freshly read AUTH secret, when built with ``reconnect_with``)."""
        disconnect(self._redis)
        if self._reconnect_with is not None:
            self._redis = self._reconnect_with()
        self._version = None
        self._pinned.clear()
        self._failed_at = None

    def publication(self, version: str | None = None) -> Publication:
        """The current publication (or ``version``, an experiment variant's, when its manifest is there;
        else the current one), from the in-process caches when they are fresh."""
        manifest = self._manifest(version) if version is not None else None
        if manifest is None:
            version = self.current_version()
            manifest = self._manifest(version) if version is not None else None
        return Publication(version, manifest, self._retired_movies())

    def read_user(
        self, user_id: str, recent_n: int = HISTORY_LENGTH, version: str | None = None
    ) -> UserSnapshot:
        """The publication (the current one, or ``version``'s) and the user, in one command (a script:
        every key carries the user's hash tag, so it is cluster-safe)."""
        publication = self.publication(version)
        version, manifest = publication.version, publication.manifest
        cutoff = manifest.data_cutoff if manifest else NEVER_STALE
        user_keys = [keys.seen(user_id), keys.stale(user_id), keys.recent(user_id), keys.profile(user_id)]
        if version is not None:
            user_keys += [
                keys.recommendations(version, user_id),
                keys.online_recommendations(version, user_id),
            ]
        args = [recent_n, repr(float(cutoff)), SEEN_READ_WHOLE]
        reply = self._call(_READ_USER, self._redis, user_keys, args)
        seen_raw, stale, precomputed_raw, online_raw, recent_raw, profile_raw = reply
        complete = recent_raw is not None
        return UserSnapshot(
            publication=publication,
            precomputed=LazyItems(precomputed_raw) if precomputed_raw else None,
            precomputed_stale=bool(stale),
            online=LazyItems(online_raw) if online_raw else None,
            seen=frozenset(map(int, seen_raw)),
            complete=complete,
            recent=[int(m) for m in recent_raw[::2]] if complete else [],
            recent_times=[float(t) for t in recent_raw[1::2]] if complete else [],
            profile=_profile(_pairs(profile_raw)) if complete else {},
        )

    def complete(self, user_id: str, user: UserSnapshot, recent_n: int = HISTORY_LENGTH) -> UserSnapshot:
        """``user`` with what ``read_user`` left out (one pipelined round trip): for the tiers below the
        cached lists, when those did not serve."""
        if user.complete:
            return user
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrevrange(keys.recent(user_id), 0, recent_n - 1, withscores=True)
        pipe.smembers(keys.seen(user_id))
        pipe.hgetall(keys.profile(user_id))
        recent_raw, seen_raw, profile_raw = self._call(pipe.execute)
        return dataclasses.replace(
            user,
            seen=frozenset(map(int, seen_raw)),
            complete=True,
            recent=[int(m) for m, _ in recent_raw],
            recent_times=[float(t) for _, t in recent_raw],
            profile=_profile(profile_raw.items()),
        )

    def current_version(self) -> str | None:
        now = self._clock()
        if self._version is None or now - self._version[0] > VERSION_CACHE_SECONDS:
            raw = self._call(self._redis.get, keys.CURRENT_VERSION)
            self._version = (now, raw.decode() if isinstance(raw, bytes) else None)
        return self._version[1]

    def pinned_version(self, variant: str) -> str | None:
        """The version a challenger publication pinned under ``variant``; cached like the current one."""
        now = self._clock()
        cached = self._pinned.get(variant)
        if cached is None or now - cached[0] > VERSION_CACHE_SECONDS:
            raw = self._call(self._redis.hget, keys.PINNED_VERSIONS, variant)
            cached = (now, raw.decode() if isinstance(raw, bytes) else None)
            self._pinned[variant] = cached
        return cached[1]

    def popularity(self, version: str, segment: str) -> list[Item] | None:
        raw = self._call(self._redis.get, keys.popularity(version, segment))
        return decode_items(raw) if isinstance(raw, bytes) else None

    def trending(self, segment: str, buckets: Iterable[int], per_bucket: int = 200) -> dict[int, float]:
        pipe = self._redis.pipeline(transaction=False)
        for bucket in buckets:
            pipe.zrevrange(keys.trending(segment, bucket), 0, per_bucket - 1, withscores=True)
        totals: dict[int, float] = {}
        for rows in self._call(pipe.execute):
            for member, score in rows:
                movie_id = int(member)
                totals[movie_id] = totals.get(movie_id, 0.0) + float(score)
        return totals

    def movie_infos(self, movie_ids: list[int]) -> dict[int, MovieInfo]:
        if not movie_ids:
            return {}
        raws = self._call(self._redis.hmget, keys.MOVIES, [str(m) for m in movie_ids])
        return {m: decode_movie_info(raw) for m, raw in zip(movie_ids, raws, strict=True) if raw}

    def save_online(self, version: str, user_id: str, items: list[Item], ttl_seconds: int) -> None:
        self._call(
            self._redis.set,
            keys.online_recommendations(version, user_id),
            encode_items(items),
            ex=ttl_seconds,
        )

    def _manifest(self, version: str) -> Manifest | None:
        if version not in self._manifests:
            raw = self._call(self._redis.get, keys.version_manifest(version))
            if not isinstance(raw, bytes):
                return None
            if len(self._manifests) >= MANIFESTS_KEPT:  # the champion's, a challenger's, one superseded
                self._manifests.pop(next(iter(self._manifests)))
            self._manifests[version] = Manifest.from_json(raw)
        return self._manifests[version]

    def _retired_movies(self) -> frozenset[int]:
        now = self._clock()
        if self._retired is None or now - self._retired[0] > RETIRED_CACHE_SECONDS:
            members = self._call(self._redis.smembers, keys.RETIRED_MOVIES)
            self._retired = (now, frozenset(int(m) for m in members))
        return self._retired[1]

    def _call(self, function: Callable[..., object], *args: object, **kwargs: object) -> Any:
        if self._failed_at is not None and self._clock() - self._failed_at < FAIL_FAST_SECONDS:
            raise StoreUnavailableError("Redis: failing fast after a recent error")
        try:
            result = function(*args, **kwargs)
        except REDIS_ERRORS as error:
            self._failed_at = self._clock()
            raise StoreUnavailableError(f"Redis: {error}") from error
        self._failed_at = None
        return result


def _profile(pairs: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The profile hash without its per-field version stamps (``<field>@v``, written by ingest)."""
    return {k.decode(): v.decode() for k, v in pairs if not k.endswith(b"@v")}


def _pairs(flat: list[bytes] | None) -> Iterator[tuple[bytes, bytes]]:
    """A hash as a script returns it, ``[field, value, field, value, ...]``, as pairs."""
    values = iter(flat or [])
    return zip(values, values, strict=True)
