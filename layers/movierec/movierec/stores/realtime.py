"""Real-time state in Redis, written by ingest: seen sets, recent items, stale marks, profiles,
the live catalogue and trending counters.

One batch costs two pipelined round trips: the first applies every user's and movie's changes with
small Lua scripts (atomic per user, all keys in one hash-tag slot), the second adds the engagements that
were new to trending. Scripts run by SHA-1 (``EVALSHA``), so no ``SCRIPT EXISTS`` round trip precedes
the first; a node that lost them (restart, failover) answers NOSCRIPT, and only those calls are re-run
after loading them. Seen sets, recent items, profiles and the catalogue are idempotent and
order-independent by construction; trending counts are guarded by each user's applied-events set, so a
redelivered event never counts twice. If Redis fails between the two round trips, that batch's trending
increments are skipped on redelivery (never doubled); the events themselves reach MongoDB with the batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import NoScriptError

from movierec import keys
from movierec.contracts import Engagement, MovieChange, ProfileChange
from movierec.errors import StoreUnavailableError
from movierec.publication import MovieInfo, encode_movie_info
from movierec.stores.cache import REDIS_ERRORS, LuaScript, RedisClient, queue_evalsha

UNATTRIBUTED_CAP = 500
"""Engagements kept per user while their region is unknown (new users, before sign-up lands)."""

# KEYS: applied, seen, recent, stale, profile, unattributed.
# ARGV: now, applied_ttl, recent_len, then (event_id, movie_id, occurred_at) triples.
# Returns: {region or false, new_flag_1, new_flag_2, ...}
_APPLY_ENGAGEMENTS = """
local applied, seen, recent, stale = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local profile, unattributed = KEYS[5], KEYS[6]
local now, ttl, recent_len = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', applied, '-inf', now - ttl)
local region = redis.call('HGET', profile, 'region')  -- false when unknown
local flags = {region}
local latest = tonumber(redis.call('GET', stale) or '0')
for i = 4, #ARGV, 3 do
  local event_id, movie_id, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local is_new = redis.call('ZADD', applied, 'NX', now, event_id)
  flags[#flags + 1] = is_new
  if is_new == 1 and not region then
    redis.call('RPUSH', unattributed, movie_id .. ':' .. ARGV[i + 2])
  end
  redis.call('SADD', seen, movie_id)
  redis.call('ZADD', recent, 'GT', at, movie_id)
  if at > latest then latest = at end
end
redis.call('ZREMRANGEBYRANK', recent, 0, -(recent_len + 1))
redis.call('LTRIM', unattributed, -%(unattributed_cap)d, -1)
redis.call('SET', stale, string.format('%%.3f', latest))
for _, key in ipairs({applied, seen, recent, stale, unattributed}) do redis.call('EXPIRE', key, ttl) end
return flags
"""

# KEYS: profile, unattributed. ARGV: version, then field/value pairs. A field changes only if this
# version is newer than its own. When the user gets a region for the first time, returns it with the
# engagements that were waiting for it: {region, "movie:epoch", ...}; otherwise {}.
_APPLY_PROFILE = """
local version = ARGV[1]
local had_region = redis.call('HEXISTS', KEYS[1], 'region') == 1
for i = 2, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], field .. '@v')
  if (not current) or current < version then
    redis.call('HSET', KEYS[1], field, value, field .. '@v', version)
  end
end
if had_region or redis.call('HEXISTS', KEYS[1], 'region') == 0 then return {} end
local waiting = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
table.insert(waiting, 1, redis.call('HGET', KEYS[1], 'region'))
return waiting
"""

# KEYS: movies, versions, retired. ARGV: movie_id, version, retired (0/1), metadata JSON.
# Metadata and status are separate last-writer-wins registers, so a retire and an upsert arriving in
# either order end the same way: the newest metadata, and the newest of the two statuses.
_APPLY_MOVIE = """
local movie, version = ARGV[1], ARGV[2]
local status_field = movie .. ':status'
local status_version = redis.call('HGET', KEYS[2], status_field)
if (not status_version) or status_version < version then
  redis.call('HSET', KEYS[2], status_field, version)
  if ARGV[3] == '1' then redis.call('SADD', KEYS[3], movie) else redis.call('SREM', KEYS[3], movie) end
end
if ARGV[3] == '0' then
  local metadata_version = redis.call('HGET', KEYS[2], movie)
  if (not metadata_version) or metadata_version < version then
    redis.call('HSET', KEYS[2], movie, version)
    redis.call('HSET', KEYS[1], movie, ARGV[4])
  end
end
return 1
"""


@dataclass(frozen=True)
class _Call:
    script: LuaScript
    keys: list[str]
    args: list[str | int | float]


@dataclass(frozen=True)
class TrendingPolicy:
    bucket_seconds: int
    buckets_kept: int


class RealtimeState:
    def __init__(self, client: RedisClient, *, recent_length: int, applied_ttl_seconds: int) -> None:
        self._redis = client
        self._recent_length = recent_length
        self._applied_ttl = applied_ttl_seconds
        self._apply_engagements = LuaScript.of(_APPLY_ENGAGEMENTS % {"unattributed_cap": UNATTRIBUTED_CAP})
        self._apply_profile = LuaScript.of(_APPLY_PROFILE)
        self._apply_movie = LuaScript.of(_APPLY_MOVIE)

    def apply(
        self,
        engagements: Sequence[Engagement],
        profiles: Sequence[ProfileChange],
        movies: Sequence[MovieChange],
        trending: TrendingPolicy,
        now: float,
    ) -> None:
        """Apply a batch; raises StoreUnavailableError when Redis cannot take it (safe to retry whole)."""
        try:
            self._apply(engagements, profiles, movies, trending, now)
        except REDIS_ERRORS as error:
            raise StoreUnavailableError(f"Redis: {error}") from error

    def forget_counts(self, scan_count: int = 1_000) -> int:
        """Delete the trending buckets with the applied markers and waiting engagements that guard them,
        so that applying every stored event again counts each exactly once; returns the keys deleted.
        Raises StoreUnavailableError."""
        deleted = 0
        try:
            for pattern in keys.COUNTING_STATE_PATTERNS:
                batch: list[Any] = []
                for key in self._redis.scan_iter(match=pattern, count=scan_count):
                    batch.append(key)
                    if len(batch) >= scan_count:
                        deleted += self._unlink(batch)
                        batch = []
                deleted += self._unlink(batch)
        except REDIS_ERRORS as error:
            raise StoreUnavailableError(f"Redis: {error}") from error
        return deleted

    def _unlink(self, names: list[Any]) -> int:
        # One key per call: in cluster mode the keys of a batch live in different slots.
        if not names:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.unlink(name)
        return sum(int(n) for n in pipe.execute())

    def _apply(
        self,
        engagements: Sequence[Engagement],
        profiles: Sequence[ProfileChange],
        movies: Sequence[MovieChange],
        trending: TrendingPolicy,
        now: float,
    ) -> None:
        by_user: dict[str, list[Engagement]] = defaultdict(list)
        for item in engagements:
            by_user[item.user_id].append(item)

        calls: list[_Call] = []
        # Profiles first: engagements in the same batch then see the user's region.
        for change in profiles:
            args: list[str | int | float] = [change.version]
            for field, value in change.fields.items():
                args += [field, value]
            calls.append(
                _Call(
                    self._apply_profile,
                    [keys.profile(change.user_id), keys.unattributed(change.user_id)],
                    args,
                )
            )
        for movie in movies:
            metadata = encode_movie_info(MovieInfo(movie.title, movie.genres, movie.year))
            calls.append(
                _Call(
                    self._apply_movie,
                    [keys.MOVIES, keys.MOVIE_VERSIONS, keys.RETIRED_MOVIES],
                    [movie.movie_id, movie.version, int(movie.retired), metadata],
                )
            )
        users = list(by_user)
        for user_id in users:
            args = [repr(now), self._applied_ttl, self._recent_length]
            for item in by_user[user_id]:
                args += [item.event_id, item.movie_id, repr(item.occurred_at)]
            user_keys = [
                keys.applied_events(user_id),
                keys.seen(user_id),
                keys.recent(user_id),
                keys.stale(user_id),
                keys.profile(user_id),
                keys.unattributed(user_id),
            ]
            calls.append(_Call(self._apply_engagements, user_keys, args))
        results = self._run(calls)
        per_profile = results[: len(profiles)]
        per_user = results[len(profiles) + len(movies) :]

        counts = _TrendingCounts(trending, now)
        for waiting in per_profile:
            if waiting:  # a first region arrived: count the engagements that waited for it
                segment = keys.region_segment(waiting[0].decode())
                for entry in waiting[1:]:
                    movie_id, at = entry.decode().split(":", 1)
                    counts.add(segment, int(movie_id), float(at))
        for user_id, flags in zip(users, per_user, strict=True):
            region = flags[0].decode() if flags[0] else None
            for item, is_new in zip(by_user[user_id], flags[1:], strict=True):
                if not is_new:
                    continue
                counts.add(keys.GLOBAL_SEGMENT, item.movie_id, item.occurred_at)
                if region:
                    counts.add(keys.region_segment(region), item.movie_id, item.occurred_at)
        counts.write(self._redis)

    def _run(self, calls: Sequence[_Call]) -> list[Any]:
        """All calls in one round trip (on a cluster, one per master, sent together). Calls that met
        NOSCRIPT are re-run, in order, once the scripts are loaded (on every master, for a cluster);
        re-running only those keeps the others' answers (which events were new)."""
        results = self._pipeline(calls)
        missing = [index for index, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for script in {calls[index].script for index in missing}:
                self._redis.script_load(script.source)
            for index, result in zip(missing, self._pipeline([calls[i] for i in missing]), strict=True):
                results[index] = result
        for result in results:
            if isinstance(result, REDIS_ERRORS):
                raise result
        return results

    def _pipeline(self, calls: Sequence[_Call]) -> list[Any]:
        pipe = self._redis.pipeline(transaction=False)
        for call in calls:
            queue_evalsha(pipe, call.script.sha, call.keys, call.args)
        return pipe.execute(raise_on_error=False)


class _TrendingCounts:
    """Increments for one batch, summed per key so the second round trip stays small."""

    def __init__(self, policy: TrendingPolicy, now: float) -> None:
        self._policy = policy
        self._newest = int(now // policy.bucket_seconds)
        self._increments: dict[tuple[str, int], dict[int, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, segment: str, movie_id: int, occurred_at: float) -> None:
        bucket = int(occurred_at // self._policy.bucket_seconds)
        if self._newest - self._policy.buckets_kept < bucket <= self._newest:
            self._increments[(segment, bucket)][movie_id] += 1
        # else: too old (or clock-skewed into the future) to matter for "trending now"

    def write(self, client: RedisClient) -> None:
        if not self._increments:
            return
        ttl = self._policy.bucket_seconds * self._policy.buckets_kept
        pipe = client.pipeline(transaction=False)
        for (segment, bucket), movies in self._increments.items():
            key = keys.trending(segment, bucket)
            for movie_id, count in movies.items():
                pipe.zincrby(key, count, movie_id)
            pipe.expire(key, ttl)
        pipe.execute()
