"""Reading a range of one Kinesis shard back, as ingest received it: what replaying an exhausted batch needs.

A :class:`StreamRange` names what an on-failure message points at, for either stream: a Kinesis shard
between two sequence numbers, or a Kafka partition between two offsets (``infra.ops.kafka_reader``).

An exhausted batch's on-failure message carries only the shard and the first and last sequence numbers
(never the data), so the records are read again from the stream with ``AT_SEQUENCE_NUMBER``. That works
only while they are within the stream's retention; once trimmed, the read raises
:class:`RecordsUnavailableError` rather than replaying a part of the range.

Sequence numbers are compared as integers (they are decimal strings of varying length).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from movierec.contracts import StreamRecord
from movierec.errors import StoreUnavailableError
from movierec.stores import aws

MAX_RECORDS_PER_CALL = 10_000
"""GetRecords' own limit."""
MAX_EMPTY_PAGES = 20
"""GetRecords may answer empty pages while records exist further on; a bounded number is followed."""

_GONE_ERRORS = frozenset({"ResourceNotFoundException", "InvalidArgumentException"})
"""The stream or shard no longer exists, or the sequence number is not one of the shard's."""


@dataclass(frozen=True)
class StreamRange:
    """Records ``first..last`` (both included) of one shard or partition, as an on-failure message says."""

    source: Literal["kinesis", "kafka"]
    stream: str  # the Kinesis stream (ARN or name), or the Kafka topic
    partition: str  # the shard id, or the partition number
    first: int  # sequence number, or offset
    last: int
    size: int  # records the mapping said the batch had
    servers: str | None = None  # Kafka bootstrap servers, when the message names them
    region: str | None = None  # of the MSK cluster, when the message names its ARN

    def describe(self) -> str:
        return f"{self.source} {self.stream} {self.partition} {self.first}..{self.last}"

    def gone(self, reason: str) -> RecordsUnavailableError:
        return RecordsUnavailableError(self, reason)


class RecordsUnavailableError(Exception):
    """The range cannot be read back whole: trimmed past the stream's retention, or the stream is gone."""

    def __init__(self, span: StreamRange, reason: str) -> None:
        super().__init__(f"records {span.describe()} are no longer available: {reason}")
        self.span = span
        self.reason = reason


class KinesisRangeReader:
    """Reads the records between two sequence numbers (both included) of one shard."""

    def __init__(
        self,
        client: Any | None = None,
        *,
        page_limit: int = MAX_RECORDS_PER_CALL,
        max_empty_pages: int = MAX_EMPTY_PAGES,
    ) -> None:
        self.client = client if client is not None else aws.client("kinesis")
        self.page_limit = max(1, min(page_limit, MAX_RECORDS_PER_CALL))
        self.max_empty_pages = max_empty_pages

    def read(self, span: StreamRange) -> list[StreamRecord]:
        """The records of ``span`` (its stream an ARN or a name), in order.

        Raises :class:`RecordsUnavailableError` when any part of the range is gone, and
        ``StoreUnavailableError`` when Kinesis cannot be reached (retry later).
        """
        stream, first, last = span.stream, span.first, span.last
        if first > last:
            raise ValueError(f"start sequence number {first} is after the end {last}")
        target = {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}
        gone = span.gone

        iterator: str | None = self._call(
            gone,
            "get_shard_iterator",
            **target,
            ShardId=span.partition,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=str(first),
        )["ShardIterator"]
        records: list[StreamRecord] = []
        empty_pages = 0
        while iterator is not None:
            # StreamARN with the iterator too: GetRecords accepts it, and moto needs it for an ARN's iterator.
            by_arn = {"StreamARN": stream} if "StreamARN" in target else {}
            page = self._call(gone, "get_records", ShardIterator=iterator, Limit=self.page_limit, **by_arn)
            rows = page.get("Records", [])
            for row in rows:
                sequence = int(row["SequenceNumber"])
                if not records and sequence > first:
                    raise gone(f"the shard's oldest readable record is {sequence}: trimmed past retention")
                if sequence < first:
                    continue
                if sequence > last:
                    return records
                records.append(_stream_record(row, stream))
                if sequence == last:
                    return records
            if rows:
                empty_pages = 0
            else:
                empty_pages += 1
                at_tip = not page.get("MillisBehindLatest")
                if at_tip or empty_pages > self.max_empty_pages:
                    break
            iterator = page.get("NextShardIterator")
        if not records:
            raise gone("no record at or after the start sequence number")
        raise gone(f"the shard ends at {records[-1].record_id}, before the end sequence number")

    def _call(self, gone: Any, operation: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _GONE_ERRORS:
                raise gone(f"{operation}: {code}: {error}") from error
            raise StoreUnavailableError(f"kinesis {operation}: {error}") from error
        except BotoCoreError as error:
            raise StoreUnavailableError(f"kinesis {operation}: {error}") from error
        return response


def _stream_record(row: dict[str, Any], stream: str) -> StreamRecord:
    """As functions/ingest's processor builds a Kinesis record (``movierec.ingest.processor``)."""
    arrival = row.get("ApproximateArrivalTimestamp")
    return StreamRecord(
        record_id=str(row["SequenceNumber"]),
        source="kinesis",
        payload=bytes(row["Data"]),
        arrival_epoch=arrival.timestamp() if isinstance(arrival, datetime) else _epoch(arrival),
        metadata={"partition_key": str(row["PartitionKey"]), "event_source_arn": stream},
    )


def _epoch(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


__all__ = ["KinesisRangeReader", "RecordsUnavailableError", "StreamRange"]
