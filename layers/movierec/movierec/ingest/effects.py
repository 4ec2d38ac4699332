"""What each event changes, as plain data the stores apply. No I/O here.

Every effect is idempotent and order-independent on its own (sets, max/min, last-writer-wins by
version), except counters, which the stores guard with per-event "applied" markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from movierec.contracts import Engagement, MovieChange, ProfileChange
from movierec.events import (
    ENGAGEMENT_EVENTS,
    PROFILE_EVENTS,
    Event,
    MovieRetireEvent,
    MovieUpsertEvent,
)
from movierec.segments import region_value

PROFILE_FIELDS = ("region", "country", "locale", "birth_year")


def version_of(event: Event) -> str:
    """A total order for last-writer-wins: occurrence time, then event id to break ties.

    Fixed-width UTC text compares correctly as a string in both Redis (Lua) and MongoDB.
    """
    moment = event.occurred_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{moment}|{event.event_id}"


def profile_change(event: Event) -> ProfileChange | None:
    if not isinstance(event, PROFILE_EVENTS):
        return None
    fields: dict[str, str | int] = {}
    for name in PROFILE_FIELDS:
        value = getattr(event, name)
        if value is not None:
            fields[name] = region_value(value) if name == "region" else value
    return ProfileChange(event.user_id, fields, version_of(event))


def movie_change(event: Event) -> MovieChange | None:
    if isinstance(event, MovieRetireEvent):
        return MovieChange(event.movie_id, version_of(event), retired=True)
    if isinstance(event, MovieUpsertEvent):
        return MovieChange(
            event.movie_id,
            version_of(event),
            retired=False,
            title=event.title,
            genres=tuple(event.genres),
            year=event.year,
            cast=tuple(event.cast),
            plot=event.plot,
        )
    return None


def engagement(event: Event) -> Engagement | None:
    if not isinstance(event, ENGAGEMENT_EVENTS):
        return None
    return Engagement(
        str(event.event_id), event.user_id, event.movie_id, event.occurred_at.timestamp(), event.type
    )


@dataclass(frozen=True)
class RealtimeChanges:
    """What a list of events changes in real-time state, in the form the stores apply."""

    engagements: list[Engagement]
    profiles: list[ProfileChange]
    movies: list[MovieChange]

    @classmethod
    def of(cls, events: Sequence[Event]) -> RealtimeChanges:
        return cls(
            engagements=[e for e in map(engagement, events) if e is not None],
            profiles=[c for c in map(profile_change, events) if c is not None],
            movies=[c for c in map(movie_change, events) if c is not None],
        )
