"""The event contract: every sample under events/samples is judged as its folder says."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from movierec.events import EventType, dump_event, json_schema, parse_event

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "samples"
VALID = sorted((SAMPLES / "valid").glob("*.json"))
INVALID = sorted((SAMPLES / "invalid").glob("*.json"))
SCHEMA_FILE = SAMPLES.parent / "schema" / "event.v1.schema.json"


def test_there_is_a_valid_sample_of_every_event_type() -> None:
    assert {path.stem for path in VALID} == {t.value for t in EventType}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_samples_parse_and_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    event = parse_event(raw)

    assert event.type == path.stem
    assert parse_event(dump_event(event)) == event
    jsonschema.validate(json.loads(raw), json_schema())


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_samples_are_rejected_naming_the_field(path: Path) -> None:
    sample = json.loads(path.read_text())

    with pytest.raises(ValidationError) as rejected:
        parse_event(json.dumps(sample["event"]))

    fields = {str(part) for error in rejected.value.errors() for part in error["loc"]}
    assert sample["expect_error_at"] in fields


def test_the_published_json_schema_is_current() -> None:
    """events/schema is generated: `python -m movierec.events events/schema` after changing events.py."""
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema()
