"""Turning a raw stream record into an Event, or into a PoisonRecord that says exactly why not."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from movierec.events import EVENT_ADAPTER, MAX_RECORD_BYTES, Event, EventType
from movierec.stores.deadletter import PoisonRecord

_KNOWN_TYPES = frozenset(t.value for t in EventType)
MAX_EVENT_ID_CHARS = 64
"""A poison record's event_id is echoed into logs and the DLQ as sent, so it is cut to a sane length."""


@dataclass(frozen=True)
class StreamRecord:
    """One record of a Kinesis or Kafka batch, reduced to what ingest needs."""

    record_id: str
    source: str  # "kinesis" | "kafka"
    payload: bytes
    arrival_epoch: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def decode(record: StreamRecord) -> Event | PoisonRecord:
    event_id: str | None = None  # known once the payload parses: it correlates the poison's log and DLQ entry

    def poison(reason: str, detail: str) -> PoisonRecord:
        return PoisonRecord(
            record.record_id, record.source, reason, detail, record.payload, record.metadata, event_id
        )

    if len(record.payload) > MAX_RECORD_BYTES:
        return poison("oversize", f"{len(record.payload)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")
    try:
        document = json.loads(record.payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return poison("undecodable", f"not UTF-8 JSON: {error}")
    if not isinstance(document, dict):
        return poison("invalid_schema", f"expected a JSON object, got {type(document).__name__}")
    if isinstance(document.get("event_id"), str):
        event_id = document["event_id"][:MAX_EVENT_ID_CHARS]
    event_type = document.get("type")
    if event_type not in _KNOWN_TYPES:
        return poison("unknown_type", f"unknown event type {event_type!r}")
    try:
        return EVENT_ADAPTER.validate_python(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or '(root)'}: {e['msg']}" for e in error.errors()
        )
        return poison("invalid_schema", problems)
