"""Builders shared by tests: stream events in the exact shapes Lambda delivers, and domain events."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

STREAM_ARN = "arn:aws:kinesis:us-east-1:123456789012:stream/movierec-local-events"
BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def kinesis_event(
    payloads: Sequence[bytes], first_sequence: int = 1, arrival: float | None = None
) -> dict[str, Any]:
    arrival_ts = arrival if arrival is not None else BASE_TIME.timestamp()
    records = []
    for offset, payload in enumerate(payloads):
        sequence = str(49_000_000_000_000_000_000 + first_sequence + offset)
        records.append(
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": "pk",
                    "sequenceNumber": sequence,
                    "data": base64.b64encode(payload).decode(),
                    "approximateArrivalTimestamp": arrival_ts,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"shardId-000000000000:{sequence}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/ingest",
                "awsRegion": "us-east-1",
                "eventSourceARN": STREAM_ARN,
            }
        )
    return {"Records": records}


def kafka_event(
    payloads: Sequence[bytes], topic: str = "movierec-events", partition: int = 0
) -> dict[str, Any]:
    records = [
        {
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "timestamp": int(BASE_TIME.timestamp() * 1000),
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(b"user").decode(),
            "value": base64.b64encode(payload).decode(),
            "headers": [],
        }
        for offset, payload in enumerate(payloads)
    ]
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/movierec/abc",
        "bootstrapServers": "b-1.movierec.kafka.us-east-1.amazonaws.com:9092",
        "records": {f"{topic}-{partition}": records},
    }


def sequence_of(event: dict[str, Any], index: int) -> str:
    return str(event["Records"][index]["kinesis"]["sequenceNumber"])


def event_payload(kind: str, n: int = 0, **fields: Any) -> bytes:
    """A valid event of ``kind``; ``n`` makes ids and times distinct and deterministic."""
    document: dict[str, Any] = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"movierec-test/{kind}/{n}")),
        "type": kind,
        "schema_version": 1,
        "occurred_at": (BASE_TIME + timedelta(minutes=n)).isoformat(),
    }
    defaults: dict[str, dict[str, Any]] = {
        "rating": {"user_id": "u1", "movie_id": 1, "rating": 4.0},
        "watch": {"user_id": "u1", "movie_id": 1, "seconds_watched": 3600, "completion": 0.9},
        "click": {"user_id": "u1", "movie_id": 1},
        "add_to_list": {"user_id": "u1", "movie_id": 1},
        "search": {"user_id": "u1", "query": "space opera"},
        "impression": {"user_id": "u1", "recommendation_id": "r1", "movie_ids": [1, 2, 3]},
        "signup": {"user_id": "u1", "region": "EU"},
        "profile": {"user_id": "u1", "locale": "en-GB"},
        "movie_upsert": {"movie_id": 1, "title": "Toy Story", "genres": ["Animation"], "year": 1995},
        "movie_retire": {"movie_id": 1},
    }
    document |= defaults[kind] | fields
    return json.dumps(document).encode()
