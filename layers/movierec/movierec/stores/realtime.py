"""Real-time state in Redis, written by ingest: seen sets, recent items, stale marks, profiles,
the live catalogue and trending counters.

One batch costs two pipelined round trips: the first applies every user's and movie's changes with
small Lua scripts (atomic per user, all keys in one hash-tag slot), the second adds the engagements that
were new to trending. Seen sets, recent items, profiles and the catalogue are idempotent and
order-independent by construction; trending counts are guarded by each user's applied-events set, so a
redelivered event never counts twice. If Redis fails between the two round trips, that batch's trending
increments are skipped on redelivery (never doubled); the events themselves are safe in MongoDB.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from movierec import keys
from movierec.errors import StoreUnavailableError
from movierec.ingest.effects import Engagement, MovieChange, ProfileChange

# ARGV: now, applied_ttl, recent_len, then (event_id, movie_id, occurred_at) triples.
# Returns: {region or false, new_flag_1, new_flag_2, ...}
_APPLY_ENGAGEMENTS = """
local applied, seen, recent, stale, profile = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, ttl, recent_len = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', applied, '-inf', now - ttl)
local flags = {}
local latest = tonumber(redis.call('GET', stale) or '0')
for i = 4, #ARGV, 3 do
  local event_id, movie_id, at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  flags[#flags + 1] = redis.call('ZADD', applied, 'NX', now, event_id)
  redis.call('SADD', seen, movie_id)
  redis.call('ZADD', recent, 'GT', at, movie_id)
  if at > latest then latest = at end
end
redis.call('ZREMRANGEBYRANK', recent, 0, -(recent_len + 1))
redis.call('SET', stale, string.format('%.3f', latest))
for _, key in ipairs({applied, seen, recent, stale}) do redis.call('EXPIRE', key, ttl) end
local region = redis.call('HGET', profile, 'region')
table.insert(flags, 1, region)
return flags
"""

# ARGV: version, then field/value pairs. A field changes only if this version is newer than its own.
_APPLY_PROFILE = """
local version = ARGV[1]
for i = 2, #ARGV, 2 do
  local field, value = ARGV[i], ARGV[i + 1]
  local current = redis.call('HGET', KEYS[1], field .. '@v')
  if (not current) or current < version then
    redis.call('HSET', KEYS[1], field, value, field .. '@v', version)
  end
end
return 1
"""

# KEYS: movies, versions, retired. ARGV: movie_id, version, retired (0/1), metadata JSON.
_APPLY_MOVIE = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current and current >= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[3], ARGV[1])
else
  redis.call('SREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
end
return 1
"""


@dataclass(frozen=True)
class TrendingPolicy:
    bucket_seconds: int
    buckets_kept: int


@dataclass(frozen=True)
class RealtimeOutcome:
    new_engagements: int
    duplicate_engagements: int


class RealtimeState:
    def __init__(self, client: redis.Redis, *, recent_length: int, applied_ttl_seconds: int) -> None:
        self._redis = client
        self._recent_length = recent_length
        self._applied_ttl = applied_ttl_seconds
        self._apply_engagements = client.register_script(_APPLY_ENGAGEMENTS)
        self._apply_profile = client.register_script(_APPLY_PROFILE)
        self._apply_movie = client.register_script(_APPLY_MOVIE)

    def apply(
        self,
        engagements: Sequence[Engagement],
        profiles: Sequence[ProfileChange],
        movies: Sequence[MovieChange],
        trending: TrendingPolicy,
        now: float,
    ) -> RealtimeOutcome:
        """Apply a batch; raises StoreUnavailableError when Redis cannot take it (safe to retry whole)."""
        try:
            return self._apply(engagements, profiles, movies, trending, now)
        except redis.RedisError as error:
            raise StoreUnavailableError(f"Redis: {error}") from error

    def _apply(
        self,
        engagements: Sequence[Engagement],
        profiles: Sequence[ProfileChange],
        movies: Sequence[MovieChange],
        trending: TrendingPolicy,
        now: float,
    ) -> RealtimeOutcome:
        by_user: dict[str, list[Engagement]] = defaultdict(list)
        for item in engagements:
            by_user[item.user_id].append(item)

        pipe = self._redis.pipeline(transaction=False)
        # Profiles first: engagements in the same batch then see the user's region.
        for change in profiles:
            args: list[str | int] = [change.version]
            for field, value in change.fields.items():
                args += [field, value]
            self._apply_profile(keys=[keys.profile(change.user_id)], args=args, client=pipe)
        for movie in movies:
            metadata = json.dumps(
                {"title": movie.title, "genres": list(movie.genres), "year": movie.year},
                separators=(",", ":"),
            )
            self._apply_movie(
                keys=[keys.MOVIES, keys.MOVIE_VERSIONS, keys.RETIRED_MOVIES],
                args=[movie.movie_id, movie.version, int(movie.retired), metadata],
                client=pipe,
            )
        users = list(by_user)
        for user_id in users:
            args = [repr(now), self._applied_ttl, self._recent_length]
            for item in by_user[user_id]:
                args += [item.event_id, item.movie_id, repr(item.occurred_at)]
            self._apply_engagements(
                keys=[
                    keys.applied_events(user_id),
                    keys.seen(user_id),
                    keys.recent(user_id),
                    keys.stale(user_id),
                    keys.profile(user_id),
                ],
                args=args,
                client=pipe,
            )
        results = pipe.execute()
        per_user = results[len(profiles) + len(movies) :]

        newest_bucket = int(now // trending.bucket_seconds)
        oldest_bucket = newest_bucket - trending.buckets_kept + 1
        ttl = trending.bucket_seconds * trending.buckets_kept
        counted = 0
        pipe = self._redis.pipeline(transaction=False)
        for user_id, flags in zip(users, per_user, strict=True):
            region = flags[0].decode() if flags[0] else None
            for item, is_new in zip(by_user[user_id], flags[1:], strict=True):
                if not is_new:
                    continue
                counted += 1
                bucket = int(item.occurred_at // trending.bucket_seconds)
                if not oldest_bucket <= bucket <= newest_bucket:
                    continue  # too old (or clock-skewed into the future) to matter for "trending now"
                segments = [keys.GLOBAL_SEGMENT] + ([keys.region_segment(region)] if region else [])
                for segment in segments:
                    key = keys.trending(segment, bucket)
                    pipe.zincrby(key, 1, item.movie_id)
                    pipe.expire(key, ttl)
        if pipe.command_stack:
            pipe.execute()
        return RealtimeOutcome(new_engagements=counted, duplicate_engagements=len(engagements) - counted)
