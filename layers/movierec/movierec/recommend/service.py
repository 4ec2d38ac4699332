"""The recommendation chain. Each tier either serves or says why not; the next one tries.

1. personalized: the precomputed list, minus movies seen since publication, genre-filtered;
2. online: NeuMF scored now from the exported artifact (a miss, a stale list, or an unknown user
   with recent activity), written back to the cache;
3. regional_popular: popularity for the user's sign-up segment (the definition the training job chose:
   region, age band, ...), then their region's, blended with real-time trending;
4. global_popular: the same for everyone;
5. snapshot: global popularity held in memory, for when Redis is unreachable.

Nothing in the chain raises for a sick dependency: a failure is a fallback with a reason, counted in
metrics. ``similar`` has no fallback (no similarity is held in memory): it lets ``StoreUnavailableError``
through, and the API answers it with a 503.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial
from typing import Protocol, TypeVar

from movierec import keys, segments
from movierec.errors import StoreUnavailableError
from movierec.observability import logger
from movierec.popularity import blend_with_trending
from movierec.publication import Item
from movierec.recommend.deadline import Deadline
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.serving import ServingStore, UserContext, UserView

POPULARITY_CACHE_SECONDS = 30.0
TRENDING_BUCKETS = 3
ONLINE_BUDGET_MS = 20.0
"""Online scoring is skipped when less than this remains: the popularity tiers still fit."""


T = TypeVar("T")


class Tier(StrEnum):
    PERSONALIZED = "personalized"
    ONLINE = "online"
    REGIONAL_POPULAR = "regional_popular"
    GLOBAL_POPULAR = "global_popular"
    SNAPSHOT = "snapshot"

    @property
    def source(self) -> str:
        """What clients see: the snapshot is global popularity served from memory."""
        return Tier.GLOBAL_POPULAR.value if self is Tier.SNAPSHOT else self.value


class OnlineScorer(Protocol):
    """Scores candidates for one user now (implemented over the model artifact)."""

    model_version: str

    def rank(
        self, user_id: str, recent: list[int], exclude: frozenset[int], n: int
    ) -> list[tuple[int, float]]:
        """Top-n (movie id, score), excluding ``exclude``; empty when it knows nothing to go on."""
        ...

    def similar(self, movie_id: int, n: int) -> list[tuple[int, float]] | None:
        """Nearest movies, or None for a movie the model does not know."""
        ...


@dataclass(frozen=True)
class Fallback:
    tier: Tier
    reason: str


@dataclass(frozen=True)
class Recommendations:
    items: list[Item]
    tier: Tier
    model_version: str | None
    recommendation_id: str
    fallbacks: list[Fallback] = field(default_factory=list)
    tier_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ServingPolicy:
    deadline_ms: int
    online_cache_ttl_seconds: int
    trending_bucket_seconds: int
    trending_weight: float = 0.3  # when the published manifest does not say


class UnknownGenreError(ValueError):
    pass


class Recommender:
    def __init__(
        self,
        store: ServingStore,
        snapshot: PopularitySnapshot,
        policy: ServingPolicy,
        scorer: Callable[[str], OnlineScorer | None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._snapshot = snapshot
        self._policy = policy
        self._scorer = scorer
        self._wall = wall_clock
        self._clock = clock
        self._popular_cache: dict[tuple[str, str], tuple[float, list[Item]]] = {}

    # ---- public API ------------------------------------------------------------------------------------

    def recommend(self, user_id: str, k: int, genre: str | None = None) -> Recommendations:
        run = _Run(self, genre)
        version = run.attempt(Tier.PERSONALIZED, self._store.current_version)
        view: UserView | None = None
        if run.ok:
            view = run.attempt(Tier.PERSONALIZED, lambda: self._store.user_view(version, user_id))
            run.context = view.context if view else None
        # After a store failure the request goes straight to the snapshot: no second timeout.
        run.retired = self._retired_quietly(run)
        if view is not None and version is not None:
            served = run.try_tier(Tier.PERSONALIZED, lambda: self._personalized(run, view, version, k, genre))
            served = served or run.try_tier(
                Tier.ONLINE, lambda: self._online(run, view, version, user_id, k, genre)
            )
            if served:
                return run.result(served, version)
        context = run.attempt(Tier.REGIONAL_POPULAR, lambda: run.user_context(user_id)) if view else None
        profile = context.profile if context else {}
        candidates = run.attempt(Tier.REGIONAL_POPULAR, lambda: self._segments_for(version, profile)) or []
        seen = context.seen if context else (view.seen_listed if view else frozenset())
        return self._popular_chain(run, version, candidates, seen | run.retired, k, genre)

    def popular(self, region: str | None, k: int, genre: str | None = None) -> Recommendations:
        run = _Run(self, genre)
        version = run.attempt(Tier.REGIONAL_POPULAR, self._store.current_version)
        candidates = [keys.region_segment(region)] if region else []
        return self._popular_chain(run, version, candidates, self._retired_quietly(run), k, genre)

    def similar(self, movie_id: int, k: int) -> list[Item] | None:
        """Movies like this one, from the model's embeddings; None when the movie is unknown.

        Raises StoreUnavailableError when the store is down or times out: nothing could answer instead.
        """
        version = self._store.current_version()
        scorer = self._scorer(version) if self._scorer and version else None
        if scorer is None:
            return None
        neighbours = scorer.similar(movie_id, k + 1)
        if neighbours is None:
            return None
        neighbours = [(m, s) for m, s in neighbours if m != movie_id][:k]
        return self._with_metadata(neighbours)

    def reconnect(self) -> None:
        """Drop pooled connections (after a SnapStart restore); the next request opens fresh ones."""
        self._store.reconnect()

    def published_version(self) -> str | None:
        return self._store.current_version()

    def known_genres(self) -> frozenset[str]:
        try:
            version = self._store.current_version()
            manifest = self._store.manifest(version) if version else None
        except StoreUnavailableError:
            manifest = None
        return frozenset(manifest.genres) if manifest and manifest.genres else self._snapshot.genres

    # ---- tiers ------------------------------------------------------------------------------------------

    def _personalized(
        self, run: _Run, view: UserView, version: str, k: int, genre: str | None
    ) -> list[Item] | str:
        if view.precomputed is None:
            return "miss"
        manifest = self._store.manifest(version)
        if manifest and view.latest_engagement and view.latest_engagement > manifest.data_cutoff:
            return "stale"
        items = _filtered(view.precomputed, view.seen_listed | run.retired, genre, k)
        return items if len(items) >= k else "exhausted"

    def _online(
        self,
        run: _Run,
        view: UserView,
        version: str,
        user_id: str,
        k: int,
        genre: str | None,
    ) -> list[Item] | str:
        if view.online is not None:
            cached = _filtered(view.online, view.seen_listed | run.retired, genre, k)
            if len(cached) >= k:
                return cached
        if self._scorer is None:
            return "no model"
        if not run.deadline.allows(ONLINE_BUDGET_MS):
            return "deadline"
        scorer = self._scorer(version)
        if scorer is None:
            return "no model"
        context = run.user_context(user_id)
        exclude = context.seen | run.retired
        ranked = scorer.rank(user_id, context.recent, exclude, n=max(k * 5, 50))
        if not ranked:
            return "unknown user"
        items = self._with_metadata(ranked)
        self._store.save_online(version, user_id, items, self._policy.online_cache_ttl_seconds)
        filtered = _filtered(items, exclude, genre, k)
        return filtered if len(filtered) >= k else "exhausted"

    def _segments_for(self, version: str | None, profile: Mapping[str, str]) -> list[str]:
        """The user's popularity segments, most specific first: theirs under the definition the
        training job chose, then their region's (every region is published; a small segment may not be)."""
        manifest = self._store.manifest(version) if version else None
        definition = manifest.segment_attribute if manifest else segments.DEFAULT_DEFINITION
        year = time.gmtime(self._wall()).tm_year
        chosen = segments.segment_of(definition, profile, year)
        regional = segments.segment_of(segments.REGION, profile, year)
        return list(dict.fromkeys(s for s in (chosen, regional) if s))

    def _popular_chain(
        self,
        run: _Run,
        version: str | None,
        candidates: list[str],
        exclude: frozenset[int],
        k: int,
        genre: str | None,
    ) -> Recommendations:
        if version is not None:
            if not candidates and run.ok:
                run.fallbacks.append(Fallback(Tier.REGIONAL_POPULAR, "no segment"))
            for segment in candidates:
                served = run.try_tier(
                    Tier.REGIONAL_POPULAR, partial(self._popular, version, segment, exclude, k, genre)
                )
                if served:
                    return run.result(served, version, Tier.REGIONAL_POPULAR)
            served = run.try_tier(
                Tier.GLOBAL_POPULAR, lambda: self._popular(version, keys.GLOBAL_SEGMENT, exclude, k, genre)
            )
            if served:
                return run.result(served, version, Tier.GLOBAL_POPULAR)
        items = _filtered(self._snapshot.items, exclude, genre, k)
        run.tier_ms[Tier.SNAPSHOT.value] = 0.0
        return run.result(items, self._snapshot.version, Tier.SNAPSHOT)

    def _popular(
        self, version: str, segment: str, exclude: frozenset[int], k: int, genre: str | None
    ) -> list[Item] | str:
        items = self._popular_list(version, segment)
        if items is None:
            return "not published"
        filtered = _filtered(items, exclude, genre, k)
        return filtered if filtered else "exhausted"

    def _popular_list(self, version: str, segment: str) -> list[Item] | None:
        """Batch popularity blended with trending, cached in-process for a few seconds."""
        now = self._clock()
        cached = self._popular_cache.get((version, segment))
        if cached and now - cached[0] < POPULARITY_CACHE_SECONDS:
            return cached[1]
        batch = self._store.popularity(version, segment)
        if batch is None:
            return None
        newest = int(self._wall() // self._policy.trending_bucket_seconds)
        counters = segments.trending_segment(segment) or keys.GLOBAL_SEGMENT
        trending = self._store.trending(counters, range(newest - TRENDING_BUCKETS + 1, newest + 1))
        manifest = self._store.manifest(version)  # the training job chose the weight on validation
        weight = manifest.trending_weight if manifest else self._policy.trending_weight
        blended = blend_with_trending([(i.movie_id, i.score) for i in batch], trending, weight)
        known = {item.movie_id: item for item in batch}
        missing = [m for m, _ in blended if m not in known]
        infos = self._store.movie_infos(missing) if missing else {}
        items = [
            Item(m, s, known[m].title, known[m].genres, known[m].year)
            if m in known
            else Item(m, s, infos[m].title, infos[m].genres, infos[m].year)
            for m, s in blended
            if m in known or m in infos
        ]
        self._popular_cache[(version, segment)] = (now, items)
        if segment == keys.GLOBAL_SEGMENT:
            self._snapshot.refresh(items, version)
        return items

    # ---- helpers ----------------------------------------------------------------------------------------

    def _with_metadata(self, ranked: list[tuple[int, float]]) -> list[Item]:
        infos = self._store.movie_infos([m for m, _ in ranked])
        return [Item(m, s, infos[m].title, infos[m].genres, infos[m].year) for m, s in ranked if m in infos]

    def _retired_quietly(self, run: _Run) -> frozenset[int]:
        """Movies retired since publication; none after a store failure (the snapshot answers anyway)."""
        if not run.ok:
            return frozenset()
        try:
            return self._store.retired()
        except StoreUnavailableError:
            return frozenset()


def _filtered(items: Iterable[Item], exclude: frozenset[int], genre: str | None, k: int) -> list[Item]:
    chosen: list[Item] = []
    for item in items:
        if item.movie_id in exclude or (genre is not None and genre not in item.genres):
            continue
        chosen.append(item)
        if len(chosen) == k:
            break
    return chosen


class _Run:
    """One request's bookkeeping: deadline, fallbacks with reasons, latency per tier."""

    def __init__(self, recommender: Recommender, genre: str | None) -> None:
        self.recommender = recommender
        self.deadline = Deadline(recommender._policy.deadline_ms, recommender._clock)
        self.fallbacks: list[Fallback] = []
        self.tier_ms: dict[str, float] = {}
        self.ok = True
        self.context: UserContext | None = None  # read with the user's view, or on first need
        self.retired: frozenset[int] = frozenset()
        if genre is not None and genre not in recommender.known_genres():
            raise UnknownGenreError(genre)

    def user_context(self, user_id: str) -> UserContext:
        """The user's recent activity and profile, read at most once, and only when a tier needs them."""
        if self.context is None:
            self.context = self.recommender._store.user_context(user_id)
        return self.context

    def attempt(self, tier: Tier, action: Callable[[], T]) -> T | None:
        """Run a lookup a tier depends on; on a store failure record the fallback and carry on."""
        if not self.ok:
            return None
        try:
            return action()
        except StoreUnavailableError as error:
            self.ok = False
            self.fallbacks.append(Fallback(tier, "store unavailable"))
            logger.warning("store unavailable", extra={"tier": tier.value, "error": str(error)})
            return None

    def try_tier(self, tier: Tier, action: Callable[[], list[Item] | str]) -> list[Item] | None:
        if not self.ok and tier is not Tier.SNAPSHOT:
            return None
        if not self.deadline.allows(1.0):
            self.fallbacks.append(Fallback(tier, "deadline"))
            return None
        started = self.recommender._clock()
        try:
            outcome = action()
        except StoreUnavailableError as error:
            self.ok = False
            outcome = "store unavailable"
            logger.warning("store unavailable", extra={"tier": tier.value, "error": str(error)})
        except Exception:
            logger.exception("tier failed", extra={"tier": tier.value})
            outcome = "error"
        finally:
            self.tier_ms[tier.value] = (self.recommender._clock() - started) * 1000
        if isinstance(outcome, str):
            self.fallbacks.append(Fallback(tier, outcome))
            return None
        return outcome

    def result(
        self, items: list[Item], model_version: str | None, tier: Tier | None = None
    ) -> Recommendations:
        served_by = tier or Tier(next(reversed(self.tier_ms)))
        return Recommendations(
            items=items,
            tier=served_by,
            model_version=model_version,
            recommendation_id=str(uuid.uuid4()),
            fallbacks=self.fallbacks,
            tier_ms=self.tier_ms,
        )
