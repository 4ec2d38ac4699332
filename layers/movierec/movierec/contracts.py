"""Plain data that crosses between ingest's logic and its store adapters, in one place.

``movierec.ingest`` decides; ``movierec.stores`` reads and writes. Both import these types from here, so
neither imports the other's modules for a type and the import graph has no cycle (import-linter checks
it, see ``[tool.importlinter]`` in pyproject.toml). No behaviour lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StreamRecord:
    """One record of a Kinesis or Kafka batch, reduced to what ingest needs."""

    record_id: str  # Kinesis sequence number, or Kafka ``topic-partition@offset``
    source: str  # "kinesis" | "kafka"
    payload: bytes
    arrival_epoch: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoisonRecord:
    """A record that is not a valid event, parked on the dead-letter queue with why."""

    record_id: str  # Kinesis sequence number or Kafka topic-partition@offset
    source: str  # "kinesis" or "kafka"
    reason: str  # short machine-readable cause: undecodable, invalid_schema, oversize, unknown_type
    detail: str  # human-readable explanation
    payload: bytes
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None  # the client's event_id, when the payload carried a readable one


@dataclass(frozen=True)
class ProfileChange:
    user_id: str
    fields: dict[str, str | int]
    version: str


@dataclass(frozen=True)
class MovieChange:
    movie_id: int
    version: str
    retired: bool
    title: str = ""
    genres: tuple[str, ...] = ()
    year: int | None = None
    cast: tuple[str, ...] = ()
    plot: str | None = None


@dataclass(frozen=True)
class Engagement:
    """A user engaged with a movie: feeds seen sets, recent items, trending and user counters."""

    event_id: str
    user_id: str
    movie_id: int
    occurred_at: float  # epoch seconds
    kind: str
