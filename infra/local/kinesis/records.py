"""Stream records and the Kinesis event Lambda receives for a batch of them."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from infra.local.template import REGION


@dataclass(frozen=True)
class StreamRecord:
    partition_key: str
    sequence_number: str
    data: bytes
    approximate_arrival: float  # epoch seconds

    @classmethod
    def from_get_records(cls, record: dict[str, Any]) -> StreamRecord:
        arrival = record.get("ApproximateArrivalTimestamp")
        return cls(
            partition_key=str(record["PartitionKey"]),
            sequence_number=str(record["SequenceNumber"]),
            data=bytes(record["Data"]),
            approximate_arrival=arrival.timestamp() if isinstance(arrival, datetime) else float(arrival or 0),
        )


def kinesis_event(
    records: Sequence[StreamRecord],
    *,
    shard_id: str,
    stream_arn: str,
    invoke_identity_arn: str,
    region: str = REGION,
) -> dict[str, Any]:
    """The event Lambda's Kinesis poller passes a function."""
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": record.partition_key,
                    "sequenceNumber": record.sequence_number,
                    "data": base64.b64encode(record.data).decode("ascii"),
                    "approximateArrivalTimestamp": round(record.approximate_arrival, 3),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard_id}:{record.sequence_number}",
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": invoke_identity_arn,
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            }
            for record in records
        ]
    }
