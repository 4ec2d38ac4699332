"""The recommendation chain: tiers tried in order over one snapshot of the user; the first to serve wins.

1. personalized: the precomputed list, minus movies seen since publication, genre-filtered;
2. online: the list online scoring cached, else NeuMF scored now from the artifact loaded at init (a
   miss, a stale list, or an unknown user with recent activity), written back to the cache;
3. regional_popular: popularity for the user's sign-up segment (the definition the training job chose:
   region, age band, ...), then their region's, blended with real-time trending;
4. global_popular: the same for everyone;
5. snapshot: global popularity held in memory, for when Redis is unreachable.

The user is read from the store once per request (``ServingStore.read_user``); each tier
(``recommend/tiers.py``) returns ``Served`` or ``Declined`` with its reasons, and the chain records
them. Nothing in the chain raises for a sick dependency: a failure is a fallback with a reason, counted
in metrics, and a store failure sends the request straight to the snapshot. ``similar`` has no
fallback (no similarity is held in memory): it lets ``StoreUnavailableError`` through, and the API
answers it with a 503.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from movierec.errors import StoreUnavailableError
from movierec.experiments import Assignment, Experiments
from movierec.observability import logger
from movierec.publication import Item
from movierec.recommend.deadline import Deadline
from movierec.recommend.snapshot import PopularitySnapshot
from movierec.recommend.tiers import (
    TRENDING_BUCKETS,
    Ask,
    Declined,
    GlobalPopular,
    OnlineCached,
    OnlineScored,
    Outcome,
    Personalized,
    PopularLists,
    ScorerFor,
    SegmentPopular,
    Served,
    filtered,
    with_metadata,
)
from movierec.stores.serving import Publication, ServingStore, UserSnapshot

__all__ = ["TRENDING_BUCKETS", "Recommendations", "Recommender", "ServingPolicy", "Tier"]


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
    user_id: str | None = None  # None: an anonymous visitor
    experiment: str | None = (
        None  # the experiment the user is in, and their variant (docs/experimentation.md)
    )
    variant: str | None = None


@dataclass(frozen=True)
class ServingPolicy:
    deadline_ms: int
    online_cache_ttl_seconds: int
    trending_bucket_seconds: int
    trending_weight: float = 0.3  # when the published manifest does not say


class UnknownGenreError(ValueError):
    pass


class TierStep(Protocol):
    """One tier object of a chain (``recommend/tiers.py``)."""

    needs_whole_user: bool  # all the seen set, recent movies, profile: more than the cached tiers need

    def serve(self, ask: Ask, user: UserSnapshot, deadline: Deadline) -> Outcome: ...


@dataclass(frozen=True)
class Step:
    tier: Tier  # the tier it serves as: explicit, reported in the response and the metrics
    runs: TierStep


class Recommender:
    def __init__(
        self,
        store: ServingStore,
        snapshot: PopularitySnapshot,
        policy: ServingPolicy,
        scorer: ScorerFor | None = None,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.perf_counter,
        experiments: Experiments | None = None,
    ) -> None:
        self._store = store
        self._experiments = experiments
        self._snapshot = snapshot
        self._policy = policy
        self._scorer = scorer
        self._clock = clock
        lists = PopularLists(
            store, snapshot, policy.trending_bucket_seconds, policy.trending_weight, wall_clock, clock
        )
        popular = [
            Step(Tier.REGIONAL_POPULAR, SegmentPopular(lists, wall_clock)),
            Step(Tier.GLOBAL_POPULAR, GlobalPopular(lists)),
        ]
        self._signed_in: Sequence[Step] = [
            Step(Tier.PERSONALIZED, Personalized()),
            Step(Tier.ONLINE, OnlineCached()),
            Step(Tier.ONLINE, OnlineScored(store, scorer, policy.online_cache_ttl_seconds)),
            *popular,
        ]
        self._anonymous: Sequence[Step] = popular

    def recommend(self, user_id: str, k: int, genre: str | None = None) -> Recommendations:
        """For a signed-in user. UnknownGenreError for a genre the publication does not know."""
        assignment = self._assign(user_id)
        return self._run(self._signed_in, Ask(k, genre, user_id=user_id), assignment)

    def popular(self, region: str | None, k: int, genre: str | None = None) -> Recommendations:
        """For an anonymous visitor, in the region they name (if any)."""
        return self._run(self._anonymous, Ask(k, genre, region=region))

    def similar(self, movie_id: int, k: int) -> list[Item] | None:
        """Movies like this one, from the model's embeddings; None when the movie is unknown.

        Raises StoreUnavailableError when the store is down or times out: nothing could answer instead.
        """
        publication = self._store.publication()
        scorer = self._scorer(publication.manifest) if self._scorer and publication.version else None
        if scorer is None:
            return None
        neighbours = scorer.similar(movie_id, k + 1)
        if neighbours is None:
            return None
        return with_metadata(self._store, [(m, s) for m, s in neighbours if m != movie_id][:k])

    def reconnect(self) -> None:
        """Drop pooled connections (after a SnapStart restore); the next request opens fresh ones."""
        self._store.reconnect()

    def published_version(self) -> str | None:
        return self._store.current_version()

    def _assign(self, user_id: str) -> Assignment | None:
        """The user's experiment variant; None without an experiment, or when the variant's version is
        not live (then the champion serves, and the answer is not counted in the experiment)."""
        if self._experiments is None:
            return None
        assignment = self._experiments.assign(user_id)
        if assignment is not None and assignment.pinned:
            try:
                pinned = self._store.pinned_version(assignment.variant)
            except StoreUnavailableError:
                pinned = None
            if pinned is None:
                logger.warning("experiment: nothing is pinned for the variant", extra={"variant": assignment})
                return None
            assignment = replace(assignment, version=pinned)
        if assignment is not None and assignment.version is not None:
            try:
                live = self._store.publication(assignment.version).version == assignment.version
            except StoreUnavailableError:
                live = False
            if not live:
                logger.warning("experiment: the variant's version is not live", extra={"variant": assignment})
                return None
        return assignment

    # ---- the chain ---------------------------------------------------------------------------------------

    def _run(self, steps: Sequence[Step], ask: Ask, assignment: Assignment | None = None) -> Recommendations:
        run = _Run(Deadline(self._policy.deadline_ms, self._clock), ask.user_id, assignment)
        if assignment is not None and assignment.skip_tiers:
            steps = [step for step in steps if step.tier.value not in assignment.skip_tiers]
        try:
            if ask.user_id is not None:
                user = self._store.read_user(ask.user_id, version=assignment.version if assignment else None)
            else:
                user = UserSnapshot.anonymous(self._store.publication())
        except StoreUnavailableError as error:
            # Straight to the snapshot: a second timeout would not find the store any better.
            run.store_failed(steps[0].tier, error)
            self._check_genre(ask.genre, None)
            return self._from_snapshot(run, ask, frozenset())
        self._check_genre(ask.genre, user.publication)
        if user.publication.version is None:  # nothing published yet: only the snapshot can answer
            return self._from_snapshot(run, ask, user.seen)
        for step in steps:
            if not run.deadline.allows(1.0):
                run.out_of_time(step.tier)
                continue
            started = self._clock()
            try:
                if step.runs.needs_whole_user and ask.user_id is not None:
                    user = self._store.complete(ask.user_id, user)  # at most one read (read_user's doc)
                outcome = step.runs.serve(ask, user, run.deadline)
            except StoreUnavailableError as error:
                run.store_failed(step.tier, error)
                break
            except Exception:
                logger.exception("tier failed", extra={"tier": step.tier.value})
                outcome = Declined(("error",))
            finally:
                elapsed_ms = (self._clock() - started) * 1000
                run.tier_ms[step.tier.value] = run.tier_ms.get(step.tier.value, 0.0) + elapsed_ms
            if isinstance(outcome, Served):
                run.declined(step.tier, outcome.declined)
                return run.result(outcome.items, step.tier, user.publication.version)
            run.declined(step.tier, outcome.reasons)
        return self._from_snapshot(run, ask, user.seen | user.publication.retired)

    def _from_snapshot(self, run: _Run, ask: Ask, exclude: frozenset[int]) -> Recommendations:
        items = filtered(self._snapshot.items, exclude, ask.genre, ask.k)
        run.tier_ms[Tier.SNAPSHOT.value] = 0.0  # in memory: what it costs is the chain above it
        return run.result(items, Tier.SNAPSHOT, self._snapshot.version)

    def _check_genre(self, genre: str | None, publication: Publication | None) -> None:
        manifest = publication.manifest if publication else None
        known = frozenset(manifest.genres) if manifest and manifest.genres else self._snapshot.genres
        if genre is not None and genre not in known:
            raise UnknownGenreError(genre)


@dataclass
class _Run:
    """One request's bookkeeping: its deadline, fallbacks with reasons, latency per tier."""

    deadline: Deadline
    user_id: str | None = None
    assignment: Assignment | None = None
    fallbacks: list[Fallback] = field(default_factory=list)
    tier_ms: dict[str, float] = field(default_factory=dict)

    def declined(self, tier: Tier, reasons: Sequence[str]) -> None:
        self.fallbacks.extend(Fallback(tier, reason) for reason in reasons)

    def out_of_time(self, tier: Tier) -> None:
        if Fallback(tier, "deadline") not in self.fallbacks:  # once per tier, however many steps it has
            self.fallbacks.append(Fallback(tier, "deadline"))

    def store_failed(self, tier: Tier, error: StoreUnavailableError) -> None:
        self.fallbacks.append(Fallback(tier, "store unavailable"))
        logger.warning("store unavailable", extra={"tier": tier.value, "error": str(error)})

    def result(self, items: list[Item], tier: Tier, model_version: str | None) -> Recommendations:
        return Recommendations(
            items=items,
            tier=tier,
            model_version=model_version,
            recommendation_id=str(uuid.uuid4()),
            fallbacks=self.fallbacks,
            tier_ms=self.tier_ms,
            user_id=self.user_id,
            experiment=self.assignment.experiment if self.assignment else None,
            variant=self.assignment.variant if self.assignment else None,
        )
