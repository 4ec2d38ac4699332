"""The tiers of the recommendation chain. Each reads the request's ``UserSnapshot`` and returns a typed
outcome: ``Served`` with its items, or ``Declined`` with why. None of them reads the user from the
store; the chain (``service.Recommender``) does that once per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from movierec import keys, segments
from movierec.popularity import blend_with_trending
from movierec.publication import Item, Manifest
from movierec.recommend.deadline import Deadline
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.stores.serving import ServingStore, UserSnapshot

POPULARITY_CACHE_SECONDS = 30.0
TRENDING_BUCKETS = 3
ONLINE_BUDGET_MS = 20.0
"""Online scoring is skipped when less than this remains: the popularity tiers still fit."""


@dataclass(frozen=True, slots=True)
class Ask:
    """What one request asks for. ``user_id`` is None for an anonymous visitor, who may name a region."""

    k: int
    genre: str | None
    user_id: str | None = None
    region: str | None = None


@dataclass(frozen=True, slots=True)
class Served:
    items: list[Item]
    declined: tuple[str, ...] = ()  # why narrower choices inside the tier did not serve


@dataclass(frozen=True, slots=True)
class Declined:
    reasons: tuple[str, ...]  # empty: nothing worth reporting (a later tier of the same name tries)


Outcome = Served | Declined


class OnlineScorer(Protocol):
    """Scores candidates for one user now (implemented over the model artifact)."""

    model_version: str

    def rank(
        self,
        user_id: str,
        recent: list[int],
        exclude: frozenset[int],
        n: int,
        recent_times: Sequence[float] = (),
        profile: Mapping[str, str] | None = None,
    ) -> list[tuple[int, float]]:
        """Top-n (movie id, score), excluding ``exclude``; empty when it knows nothing to go on.
        ``recent`` is newest first, ``recent_times`` their engagement times, ``profile`` the sign-up
        fields (the sequence model reads all three)."""
        ...

    def similar(self, movie_id: int, n: int) -> list[tuple[int, float]] | None:
        """Nearest movies, or None for a movie the model does not know."""
        ...


ScorerFor = Callable[[Manifest | None], OnlineScorer | None]
"""The model of a publication (its manifest's artifact), or None when there is none to score with."""


def filtered(items: Iterable[Item], exclude: frozenset[int], genre: str | None, k: int) -> list[Item]:
    chosen: list[Item] = []
    for item in items:
        if item.movie_id in exclude or (genre is not None and genre not in item.genres):
            continue
        chosen.append(item)
        if len(chosen) == k:
            break
    return chosen


def with_metadata(store: ServingStore, ranked: list[tuple[int, float]]) -> list[Item]:
    infos = store.movie_infos([m for m, _ in ranked])
    return [Item(m, s, infos[m].title, infos[m].genres, infos[m].year) for m, s in ranked if m in infos]


class Personalized:
    """The precomputed list, minus movies seen since publication."""

    needs_whole_user = False

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome:
        if user.precomputed_stale:
            return Declined(("stale",))
        if user.precomputed is None:
            return Declined(("miss",))
        exclude = user.seen | user.publication.retired
        items = filtered(user.precomputed, exclude, ask.genre, ask.k)
        return Served(items) if len(items) >= ask.k else Declined(("exhausted",))


class OnlineCached:
    """The list online scoring cached for this user and version, when it still holds k movies."""

    needs_whole_user = False

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome:
        if user.online is None:
            return Declined(())
        items = filtered(user.online, user.seen | user.publication.retired, ask.genre, ask.k)
        return Served(items) if len(items) >= ask.k else Declined(())


class OnlineScored:
    """NeuMF scored now from the artifact loaded at init, written back to the cache."""

    needs_whole_user = True

    def __init__(self, store: ServingStore, scorer_for: ScorerFor | None, cache_ttl_seconds: int) -> None:
        self._store = store
        self._scorer_for = scorer_for
        self._ttl = cache_ttl_seconds

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome:
        version = user.publication.version
        if self._scorer_for is None or version is None or ask.user_id is None:
            return Declined(("no model",))
        if not deadline.allows(ONLINE_BUDGET_MS):
            return Declined(("deadline",))
        scorer = self._scorer_for(user.publication.manifest)
        if scorer is None:
            return Declined(("no model",))
        exclude = user.seen | user.publication.retired
        ranked = scorer.rank(
            ask.user_id, user.recent, exclude, max(ask.k * 5, 50), user.recent_times, user.profile
        )
        if not ranked:
            return Declined(("unknown user",))
        items = with_metadata(self._store, ranked)
        self._store.save_online(version, ask.user_id, items, self._ttl)
        chosen = filtered(items, exclude, ask.genre, ask.k)
        return Served(chosen) if len(chosen) >= ask.k else Declined(("exhausted",))


class PopularLists:
    """Batch popularity per segment blended with trending now, cached in-process for a few seconds.
    Reading the global list refreshes the in-memory snapshot, so it is as fresh as what was served."""

    def __init__(
        self,
        store: ServingStore,
        snapshot: PopularitySnapshot,
        trending_bucket_seconds: int,
        default_trending_weight: float,
        wall_clock: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._snapshot = snapshot
        self._bucket_seconds = trending_bucket_seconds
        self._default_weight = default_trending_weight
        self._wall = wall_clock
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, list[Item]]] = {}

    def get(self, version: str, manifest: Manifest | None, segment: str) -> list[Item] | None:
        now = self._clock()
        cached = self._cache.get((version, segment))
        if cached and now - cached[0] < POPULARITY_CACHE_SECONDS:
            return cached[1]
        batch = self._store.popularity(version, segment)
        if batch is None:
            return None
        newest = int(self._wall() // self._bucket_seconds)
        counters = segments.trending_segment(segment) or keys.GLOBAL_SEGMENT
        trending = self._store.trending(counters, range(newest - TRENDING_BUCKETS + 1, newest + 1))
        weight = manifest.trending_weight if manifest else self._default_weight  # chosen on validation
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
        self._cache[(version, segment)] = (now, items)
        if segment == keys.GLOBAL_SEGMENT:
            self._snapshot.refresh(items, version)
        return items


class SegmentPopular:
    """Popularity in the user's segment under the definition the training job chose, then in their
    region's (every region is published; a small segment may not be). An anonymous visitor's segment is
    the region they name."""

    needs_whole_user = True

    def __init__(self, lists: PopularLists, wall_clock: Callable[[], float]) -> None:
        self._lists = lists
        self._wall = wall_clock

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome:
        version, manifest = user.publication.version, user.publication.manifest
        candidates = self._segments(ask, user)
        if version is None or not candidates:
            return Declined(("no segment",))
        declined: list[str] = []
        exclude = user.seen | user.publication.retired
        for segment in candidates:
            items = self._lists.get(version, manifest, segment)
            chosen = filtered(items, exclude, ask.genre, ask.k) if items is not None else []
            if chosen:
                return Served(chosen, tuple(declined))
            declined.append("not published" if items is None else "exhausted")
        return Declined(tuple(declined))

    def _segments(self, ask: Ask, user: UserSnapshot) -> Sequence[str]:
        if ask.user_id is None:
            return [keys.region_segment(ask.region)] if ask.region else []
        manifest = user.publication.manifest
        definition = manifest.segment_attribute if manifest else segments.DEFAULT_DEFINITION
        year = time.gmtime(self._wall()).tm_year
        chosen = segments.segment_of(definition, user.profile, year)
        regional = segments.segment_of(segments.REGION, user.profile, year)
        return list(dict.fromkeys(s for s in (chosen, regional) if s))


class GlobalPopular:
    needs_whole_user = True

    def __init__(self, lists: PopularLists) -> None:
        self._lists = lists

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome:
        version = user.publication.version
        items = self._lists.get(version, user.publication.manifest, keys.GLOBAL_SEGMENT) if version else None
        if items is None:
            return Declined(("not published",))
        chosen = filtered(items, user.seen | user.publication.retired, ask.genre, ask.k)
        return Served(chosen) if chosen else Declined(("exhausted",))
