"""The event contract: every record that arrives on the stream is one of these, and nothing else.

Schemas are versioned by ``schema_version``. A change that old producers cannot satisfy bumps the
version and adds a new model; consumers keep accepting every version they have ever published.
``python -m movierec.events`` writes the JSON Schema to ``events/schema/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal, get_args
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

UserId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@-]+$")]
MovieId = Annotated[int, Field(ge=1, le=2**53)]
Region = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9 _.-]+$")]

RECOMMENDATION_ID = (
    "The recommendation_id of the list the user acted from (optional, added within schema_version 1):"
    " the attribution job joins it to the served list (docs/experimentation.md)."
)

MAX_RECORD_BYTES = 64 * 1024
"""Records above this size are rejected as poison before parsing: no legitimate event is this large."""


class EventType(StrEnum):
    RATING = "rating"
    WATCH = "watch"
    CLICK = "click"
    SEARCH = "search"
    IMPRESSION = "impression"
    ADD_TO_LIST = "add_to_list"
    SIGNUP = "signup"
    PROFILE = "profile"
    MOVIE_UPSERT = "movie_upsert"
    MOVIE_RETIRE = "movie_retire"


class _Event(BaseModel):
    # NaN and infinities are no value of any field: rejected rather than let past range checks.
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)

    event_id: UUID = Field(description="Client-generated UUID; the idempotency key.")
    schema_version: Literal[1] = 1
    occurred_at: AwareDatetime = Field(description="When it happened on the client, with a timezone.")


class RatingEvent(_Event):
    type: Literal[EventType.RATING]
    user_id: UserId
    movie_id: MovieId
    rating: float = Field(ge=0.5, le=5.0, multiple_of=0.5)
    recommendation_id: str | None = Field(default=None, max_length=64, description=RECOMMENDATION_ID)


class WatchEvent(_Event):
    type: Literal[EventType.WATCH]
    user_id: UserId
    movie_id: MovieId
    seconds_watched: int = Field(ge=0, le=7 * 24 * 3600)
    completion: float = Field(ge=0.0, le=1.0, description="Fraction of the runtime watched.")
    recommendation_id: str | None = Field(default=None, max_length=64, description=RECOMMENDATION_ID)


class ClickEvent(_Event):
    type: Literal[EventType.CLICK]
    user_id: UserId
    movie_id: MovieId
    recommendation_id: str | None = Field(default=None, max_length=64, description=RECOMMENDATION_ID)
    position: int | None = Field(default=None, ge=0, le=1000)


class SearchEvent(_Event):
    type: Literal[EventType.SEARCH]
    user_id: UserId
    query: str = Field(min_length=1, max_length=256)


class ImpressionEvent(_Event):
    type: Literal[EventType.IMPRESSION]
    user_id: UserId
    recommendation_id: str = Field(min_length=1, max_length=64)
    movie_ids: list[MovieId] = Field(min_length=1, max_length=100)
    source: str | None = Field(default=None, max_length=32, description="The tier that served the list.")


class AddToListEvent(_Event):
    type: Literal[EventType.ADD_TO_LIST]
    user_id: UserId
    movie_id: MovieId


class SignupEvent(_Event):
    type: Literal[EventType.SIGNUP]
    user_id: UserId
    region: Region
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    locale: str | None = Field(default=None, max_length=16)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)


class ProfileEvent(_Event):
    type: Literal[EventType.PROFILE]
    user_id: UserId
    region: Region | None = None
    country: str | None = Field(default=None, min_length=2, max_length=2, pattern=r"^[A-Za-z]{2}$")
    locale: str | None = Field(default=None, max_length=16)
    birth_year: int | None = Field(default=None, ge=1900, le=2100)


class MovieUpsertEvent(_Event):
    type: Literal[EventType.MOVIE_UPSERT]
    movie_id: MovieId
    title: str = Field(min_length=1, max_length=512)
    genres: list[str] = Field(default_factory=list, max_length=32)
    year: int | None = Field(default=None, ge=1870, le=2100)
    cast: list[str] = Field(default_factory=list, max_length=64)
    plot: str | None = Field(default=None, max_length=8192)


class MovieRetireEvent(_Event):
    type: Literal[EventType.MOVIE_RETIRE]
    movie_id: MovieId


Event = Annotated[
    RatingEvent
    | WatchEvent
    | ClickEvent
    | SearchEvent
    | ImpressionEvent
    | AddToListEvent
    | SignupEvent
    | ProfileEvent
    | MovieUpsertEvent
    | MovieRetireEvent,
    Field(discriminator="type"),
]
UserEvent = SignupEvent | ProfileEvent
InteractionEvent = RatingEvent | WatchEvent | ClickEvent | AddToListEvent

PROFILE_EVENTS = (SignupEvent, ProfileEvent)
MOVIE_EVENTS = (MovieUpsertEvent, MovieRetireEvent)
ENGAGEMENT_EVENTS = (RatingEvent, WatchEvent, ClickEvent, AddToListEvent)
"""The one home of "which events are interactions": a user engaged with one movie. They feed seen sets,
recent items, trending, user counters and training. Other types (search, impression) are stored but
change no state."""


def type_names(event_classes: Sequence[type[BaseModel]]) -> tuple[str, ...]:
    """The wire ``type`` of each event class (its ``Literal``), as MongoDB stores it."""
    return tuple(str(get_args(cls.model_fields["type"].annotation)[0]) for cls in event_classes)


ENGAGEMENT_TYPES = frozenset(type_names(ENGAGEMENT_EVENTS))

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: bytes | str) -> Event:
    """Validate one JSON record; raises ``pydantic.ValidationError`` (or ``ValueError``) when invalid."""
    return EVENT_ADAPTER.validate_json(raw)


def dump_event(event: Event) -> bytes:
    """The canonical wire form of an event (compact JSON, UTF-8)."""
    return EVENT_ADAPTER.dump_json(event, exclude_none=True)


def occurred_epoch(event: Event) -> float:
    return event.occurred_at.timestamp()


def json_schema() -> dict[str, object]:
    schema = EVENT_ADAPTER.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "movierec stream event, schema_version 1"
    return schema


def write_json_schema(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "event.v1.schema.json"
    target.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
    return target


__all__ = [
    "ENGAGEMENT_EVENTS",
    "ENGAGEMENT_TYPES",
    "EVENT_ADAPTER",
    "MAX_RECORD_BYTES",
    "MOVIE_EVENTS",
    "PROFILE_EVENTS",
    "AddToListEvent",
    "ClickEvent",
    "Event",
    "EventType",
    "ImpressionEvent",
    "InteractionEvent",
    "MovieId",
    "MovieRetireEvent",
    "MovieUpsertEvent",
    "ProfileEvent",
    "RatingEvent",
    "SearchEvent",
    "SignupEvent",
    "UserEvent",
    "UserId",
    "WatchEvent",
    "dump_event",
    "json_schema",
    "occurred_epoch",
    "parse_event",
    "write_json_schema",
]


if __name__ == "__main__":
    import sys

    print(write_json_schema(Path(sys.argv[1] if len(sys.argv) > 1 else "events/schema")))
