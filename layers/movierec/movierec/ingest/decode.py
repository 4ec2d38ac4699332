"""Turning a raw stream record into an Event, or into a PoisonRecord that says exactly why not.

Decoding is total: any bytes give one or the other, never an exception. Limits that protect the parser
(size, nesting depth, digits in a number) are checked before parsing; the contract is then validated
in pydantic's strict JSON mode, so a string is never coerced into a number ("4.5" is not a rating),
and an event dated further in the future than the clock-skew tolerance is rejected, so that it cannot
win last-writer-wins forever.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import ValidationError

from movierec.contracts import PoisonRecord, StreamRecord
from movierec.events import EVENT_ADAPTER, MAX_RECORD_BYTES, Event, EventType

_KNOWN_TYPES = frozenset(t.value for t in EventType)
MAX_EVENT_ID_CHARS = 64
"""A poison record's event_id is echoed into logs and the DLQ as sent, so it is cut to a sane length."""

MAX_NESTING_DEPTH = 8
"""The deepest event is an object holding a list; anything much deeper is hostile, not an event."""

MAX_NUMBER_DIGITS = 32
"""No field needs more (movie ids stop at 2**53); a longer number would only cost the parser."""

_LONG_DIGIT_RUN = re.compile(rb"[0-9]{%d,}" % (MAX_NUMBER_DIGITS + 1))


@dataclass(frozen=True)
class InputRules:
    """What the clock allows: ``occurred_at`` may lead ``now`` by at most ``max_future_seconds``."""

    now: float  # epoch seconds
    max_future_seconds: float


def decode(record: StreamRecord, rules: InputRules) -> Event | PoisonRecord:
    payload = record.payload

    def poison(reason: str, detail: str, event_id: str | None = None) -> PoisonRecord:
        return PoisonRecord(
            record.record_id, record.source, reason, detail, payload, record.metadata, event_id
        )

    if len(payload) > MAX_RECORD_BYTES:
        return poison("oversize", f"{len(payload)} bytes exceeds the {MAX_RECORD_BYTES}-byte limit")
    problem = structure_problem(payload)
    if problem is not None:
        return poison("too_complex", problem)
    try:
        event = EVENT_ADAPTER.validate_json(payload, strict=True)
    except ValidationError as error:
        return _explain(payload, error, poison)
    except Exception as error:  # decoding is total: whatever the parser raises is poison
        return poison("undecodable", f"{type(error).__name__}: {error}"[:500])
    lead = event.occurred_at.timestamp() - rules.now
    if lead > rules.max_future_seconds:
        return poison(
            "future_event",
            f"occurred_at is {lead:.0f} s ahead of the clock (tolerance {rules.max_future_seconds:.0f} s)",
            str(event.event_id),
        )
    return event


def structure_problem(payload: bytes) -> str | None:
    """Why a payload is too deep or holds too long a number for the parser, or None.

    Two cheap bounds clear every ordinary event: few brackets cannot nest deeply, and no long run of
    digits means no long number. Only a payload failing a bound is scanned, token by token.
    """
    if payload.count(b"[") + payload.count(b"{") <= MAX_NESTING_DEPTH and not _LONG_DIGIT_RUN.search(payload):
        return None
    depth = digits = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
            continue
        if 0x30 <= byte <= 0x39:
            digits += 1
            if digits > MAX_NUMBER_DIGITS:
                return f"a number has more than {MAX_NUMBER_DIGITS} digits"
            continue
        digits = 0
        if byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                return f"nested deeper than {MAX_NESTING_DEPTH} levels"
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return None


def _explain(payload: bytes, error: ValidationError, poison: Callable[..., PoisonRecord]) -> PoisonRecord:
    """The most useful reason for a payload the contract refused: parse it plainly to say what it is."""
    try:
        document = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError) as parse_error:
        return poison("undecodable", f"not UTF-8 JSON: {parse_error}"[:500])
    if not isinstance(document, dict):
        return poison("invalid_schema", f"expected a JSON object, got {type(document).__name__}")
    raw_id = document.get("event_id")
    event_id = raw_id[:MAX_EVENT_ID_CHARS] if isinstance(raw_id, str) else None
    event_type = document.get("type")
    if not isinstance(event_type, str) or event_type not in _KNOWN_TYPES:
        return poison("unknown_type", f"unknown event type {_shown(event_type)}", event_id)
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or '(root)'}: {e['msg']}" for e in error.errors()
    )
    return poison("invalid_schema", problems, event_id)


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
