"""Replaying exhausted stream batches from the event-source mapping's on-failure queue.

When a mapping gives up on a batch (retries exhausted, or records older than the maximum age), it
sends the on-failure destination a message that locates the batch but holds no data: a Kinesis
mapping's ``KinesisBatchInfo`` names the shard and the first and last sequence numbers, an MSK or
Kafka mapping's ``KafkaBatchInfo`` the topic, partition and first and last offsets. A replay reads that
range back from the stream (while it is within the stream's retention) and ingests it again, in
chunks, through ``IngestService.ingest``. Ingest is idempotent, so records that did get through before
are duplicates and change nothing.

A message is done, and deleted, only when every one of its records was ingested (poison records count
as ingested: ingest parks them on the dead-letter queue). Anything else stays in the queue for the next
run: a transient store failure, or records that can no longer be read (then a person has to decide).
Messages of another shape (the poison records sharing the queue) are left untouched.

``python -m infra.ops.replay --queue-url URL [--max-messages N]`` runs it (docs/operations.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.ops.failure_queue import FailureQueue, QueueMessage
from infra.ops.stream_reader import RecordsUnavailableError, StreamRange
from movierec.contracts import StreamRecord
from movierec.errors import StoreUnavailableError
from movierec.ingest.service import BatchResult
from movierec.observability import logger

BatchHandler = Callable[[Sequence[StreamRecord]], BatchResult]
DEFAULT_CHUNK = 100
"""Records per ingest call: the size of the batches the mapping delivers (``IngestBatchSize``)."""
DEFAULT_MAX_MESSAGES = 10


class _Envelope(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)


class RequestContext(_Envelope):
    request_id: str = Field(alias="requestId")
    function_arn: str = Field(alias="functionArn")
    condition: str
    approximate_invoke_count: int = Field(alias="approximateInvokeCount")


class ResponseContext(_Envelope):
    status_code: int | None = Field(default=None, alias="statusCode")
    executed_version: str | None = Field(default=None, alias="executedVersion")
    function_error: str | None = Field(default=None, alias="functionError")


class KinesisBatchInfo(_Envelope):
    shard_id: str = Field(alias="shardId")
    start_sequence_number: str = Field(alias="startSequenceNumber", pattern=r"^\d+$")
    end_sequence_number: str = Field(alias="endSequenceNumber", pattern=r"^\d+$")
    approximate_arrival_of_first_record: datetime | None = Field(
        default=None, alias="approximateArrivalOfFirstRecord"
    )
    approximate_arrival_of_last_record: datetime | None = Field(
        default=None, alias="approximateArrivalOfLastRecord"
    )
    batch_size: int = Field(alias="batchSize", ge=1)
    stream_arn: str = Field(alias="streamArn")

    def span(self) -> StreamRange:
        return StreamRange(
            source="kinesis",
            stream=self.stream_arn,
            partition=self.shard_id,
            first=int(self.start_sequence_number),
            last=int(self.end_sequence_number),
            size=self.batch_size,
        )


class KafkaBatchInfo(_Envelope):
    batch_size: int = Field(alias="batchSize", ge=1)
    topic: str = Field(min_length=1)
    partition: int = Field(ge=0)
    first_record_offset: int = Field(alias="firstRecordOffset", ge=0)
    last_record_offset: int = Field(alias="lastRecordOffset", ge=0)
    event_source_arn: str | None = Field(default=None, alias="eventSourceArn")
    bootstrap_servers: str | None = Field(default=None, alias="bootstrapServers")
    payload_size: int | None = Field(default=None, alias="payloadSize")

    def span(self) -> StreamRange:
        return StreamRange(
            source="kafka",
            stream=self.topic,
            partition=str(self.partition),
            first=self.first_record_offset,
            last=self.last_record_offset,
            size=self.batch_size,
            servers=self.bootstrap_servers,
            region=_arn_region(self.event_source_arn),
        )


def _arn_region(arn: str | None) -> str | None:
    """``arn:aws:kafka:<region>:<account>:cluster/...`` -> region (MSK IAM tokens are per region)."""
    parts = (arn or "").split(":")
    return parts[3] or None if len(parts) > 3 and parts[0] == "arn" else None


class BatchFailure(_Envelope):
    """The on-failure message of a Kinesis or Kafka event-source mapping (AWS's shape, as infra/local
    emulates for Kinesis): exactly one of the two batch infos."""

    request_context: RequestContext = Field(alias="requestContext")
    response_context: ResponseContext = Field(alias="responseContext")
    version: str = "1.0"
    timestamp: datetime | None = None
    kinesis: KinesisBatchInfo | None = Field(default=None, alias="KinesisBatchInfo")
    kafka: KafkaBatchInfo | None = Field(default=None, alias="KafkaBatchInfo")

    @model_validator(mode="after")
    def _one_batch(self) -> BatchFailure:
        if (self.kinesis is None) == (self.kafka is None):
            raise ValueError("expected exactly one of KinesisBatchInfo and KafkaBatchInfo")
        return self

    @property
    def span(self) -> StreamRange:
        info = self.kinesis or self.kafka
        assert info is not None  # the validator guarantees one
        return info.span()


def parse_failure(body: str | bytes) -> BatchFailure | None:
    """The message as a :class:`BatchFailure`, or None when it is not one (e.g. a poison record)."""
    try:
        return BatchFailure.model_validate_json(body)
    except ValidationError:
        return None


class RangeReader(Protocol):
    def read(self, span: StreamRange) -> list[StreamRecord]: ...


Readers = Mapping[str, RangeReader]
"""A reader per source ("kinesis", "kafka"), as :attr:`StreamRange.source` names them."""


@dataclass
class BatchReplay:
    """What replaying one message did."""

    failure: BatchFailure
    records: int = 0
    failed_records: int = 0
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.error is None and self.failed_records == 0


def replay_batch(
    failure: BatchFailure, readers: Readers, ingest: BatchHandler, *, chunk_size: int = DEFAULT_CHUNK
) -> BatchReplay:
    span = failure.span
    outcome = BatchReplay(failure)
    reader = readers.get(span.source)
    try:
        if reader is None:
            raise StoreUnavailableError(f"no {span.source} reader configured (see --help)")
        records = reader.read(span)
    except (RecordsUnavailableError, StoreUnavailableError) as error:
        outcome.error = str(error)
        logger.error(
            "exhausted batch cannot be read back", extra={"range": span.describe(), "error": str(error)}
        )
        return outcome
    if len(records) != span.size:
        logger.warning(
            "replayed range size differs from the batch size",
            extra={"range": span.describe(), "records": len(records), "batch_size": span.size},
        )
    outcome.records = len(records)
    for start in range(0, len(records), max(1, chunk_size)):
        chunk = records[start : start + chunk_size]
        result = ingest(chunk)
        outcome.failed_records += len(result.failed_record_ids & {r.record_id for r in chunk})
    return outcome


def replay(
    failures: Sequence[BatchFailure],
    readers: Readers,
    ingest: BatchHandler,
    *,
    chunk_size: int = DEFAULT_CHUNK,
) -> list[BatchReplay]:
    """Replays each message's range; each outcome says whether that message is done."""
    return [replay_batch(f, readers, ingest, chunk_size=chunk_size) for f in failures]


@dataclass
class ReplaySummary:
    messages_received: int = 0
    messages_replayed: int = 0  # done and deleted
    messages_left: int = 0  # exhausted batches still in the queue
    messages_ignored: int = 0  # not an exhausted batch (poison records): left as they were
    records: int = 0
    failed_records: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages_received": self.messages_received,
            "messages_replayed": self.messages_replayed,
            "messages_left": self.messages_left,
            "messages_ignored": self.messages_ignored,
            "records": self.records,
            "failed_records": self.failed_records,
            "errors": self.errors,
        }


def replay_queue(
    queue: FailureQueue,
    readers: Readers,
    ingest: BatchHandler,
    *,
    max_messages: int = DEFAULT_MAX_MESSAGES,
    chunk_size: int = DEFAULT_CHUNK,
) -> ReplaySummary:
    """Receive up to ``max_messages``, replay exhausted batches, delete the done ones, release the rest."""
    summary = ReplaySummary()
    messages = queue.receive(max_messages)
    summary.messages_received = len(messages)
    done: list[QueueMessage] = []
    keep: list[QueueMessage] = []
    try:
        for message in messages:
            failure = parse_failure(message.body)
            if failure is None:
                summary.messages_ignored += 1
                keep.append(message)
                continue
            outcome = replay_batch(failure, readers, ingest, chunk_size=chunk_size)
            summary.records += outcome.records
            summary.failed_records += outcome.failed_records
            if outcome.done:
                done.append(message)
                summary.messages_replayed += 1
            else:
                keep.append(message)
                summary.messages_left += 1
                summary.errors.append(
                    f"{failure.span.describe()}: "
                    + (outcome.error or f"{outcome.failed_records} records failed, will be retried")
                )
    finally:
        # Delete what is done even when a later message raised; the rest is visible again at once.
        queue.delete(done)
        queue.release(keep)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.ops.replay",
        description="Replay exhausted Kinesis and MSK/Kafka batches from the ingest on-failure queue.",
    )
    parser.add_argument("--queue-url", required=True, help="the SQS queue exhausted batches are sent to")
    parser.add_argument("--max-messages", type=int, default=DEFAULT_MAX_MESSAGES, help="at most this many")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK, help="records per ingest call")
    kafka = parser.add_argument_group("MSK / Kafka batches")
    kafka.add_argument(
        "--kafka-auth",
        choices=["iam", "none"],
        default="iam",
        help="iam: MSK IAM over TLS, region from the message's cluster ARN (default); none: plaintext",
    )
    kafka.add_argument("--kafka-region", help="region for MSK IAM tokens, when the message names no ARN")
    kafka.add_argument("--kafka-bootstrap-servers", help="instead of the servers the message names")
    args = parser.parse_args(argv)
    if args.max_messages < 1 or args.chunk_size < 1:
        parser.error("--max-messages and --chunk-size must be at least 1")

    # Imported here: building the service reads IngestSettings from the environment and connects.
    from infra.ops.kafka_reader import KafkaAccess, KafkaRangeReader
    from infra.ops.stream_reader import KinesisRangeReader
    from movierec.config import IngestSettings
    from movierec.ingest.wiring import build_ingest_service

    access = KafkaAccess(
        iam=args.kafka_auth == "iam",
        iam_region=args.kafka_region,
        security_protocol="SASL_SSL" if args.kafka_auth == "iam" else "PLAINTEXT",
        bootstrap_servers=args.kafka_bootstrap_servers,
    )
    service = build_ingest_service(IngestSettings())
    summary = replay_queue(
        FailureQueue(args.queue_url),
        {"kinesis": KinesisRangeReader(), "kafka": KafkaRangeReader(access)},
        service.ingest,
        max_messages=args.max_messages,
        chunk_size=args.chunk_size,
    )
    print(json.dumps(summary.as_dict(), indent=2))
    return 1 if summary.messages_left else 0


if __name__ == "__main__":
    sys.exit(main())
