"""Powertools batch processing for Kinesis and Kafka (MSK or self-managed), in bulk.

Powertools' ``BatchProcessor`` calls a handler per record; ingest needs the whole batch at once so that
MongoDB and Redis see one bulk write and one pipeline per batch. ``BulkBatchProcessor`` keeps
Powertools' event parsing and partial-failure response (``batchItemFailures``) and replaces only the
per-record loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEventRecord
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from movierec.contracts import StreamRecord
from movierec.ingest.service import BatchResult
from movierec.observability import MetricName, metrics

BatchHandler = Callable[[Sequence[StreamRecord]], BatchResult]

KAFKA_SOURCES = frozenset({"aws:kafka", "SelfManagedKafka"})


class RetryableRecordError(Exception):
    """A record that failed for a transient reason; Lambda redelivers it."""


class BulkBatchProcessor(BatchProcessor):
    def process(self) -> list[tuple[Any, ...]]:
        batch = [self._to_batch_type(record=r, event_type=self.event_type) for r in self.records]
        stream_records = [_to_stream_record(item) for item in batch]
        result: BatchResult = self.handler(stream_records)
        _emit_metrics(result)
        outcomes: list[tuple[Any, ...]] = []
        for item, stream_record in zip(batch, stream_records, strict=True):
            if stream_record.record_id in result.failed_record_ids:
                error = RetryableRecordError(stream_record.record_id)
                outcomes.append(self.failure_handler(item, (RetryableRecordError, error, None)))
            else:
                outcomes.append(self.success_handler(item, None))
        return outcomes


def event_type_of(event: dict[str, Any]) -> EventType:
    """Kinesis and Kafka events differ in shape; one function accepts both."""
    if event.get("eventSource") in KAFKA_SOURCES and isinstance(event.get("records"), dict):
        return EventType.Kafka
    records = event.get("Records")
    if isinstance(records, list) and all(r.get("eventSource") == "aws:kinesis" for r in records):
        return EventType.KinesisDataStreams
    raise ValueError("not a Kinesis Data Streams or Kafka event: expected 'Records' or 'records'")


def handle_stream_event(
    event: dict[str, Any], context: LambdaContext | None, handler: BatchHandler
) -> PartialItemFailureResponse:
    # A whole failed batch is still reported item by item, so Lambda retries exactly those records.
    processor = BulkBatchProcessor(event_type=event_type_of(event), raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=handler, processor=processor, context=context)


def _to_stream_record(item: Any) -> StreamRecord:
    if isinstance(item, KinesisStreamRecord):
        payload = item.kinesis
        return StreamRecord(
            record_id=payload.sequence_number,
            source="kinesis",
            payload=payload.data_as_bytes(),
            arrival_epoch=payload.approximate_arrival_timestamp,
            metadata={"partition_key": payload.partition_key, "event_source_arn": item.event_source_arn},
        )
    if isinstance(item, KafkaEventRecord):
        return StreamRecord(
            record_id=f"{item.topic}-{item.partition}@{item.offset}",
            source="kafka",
            payload=item.decoded_value,
            arrival_epoch=item.timestamp / 1000,
            metadata={"topic": item.topic, "partition": item.partition, "offset": item.offset},
        )
    raise TypeError(f"unsupported record type {type(item).__name__}")


def _emit_metrics(result: BatchResult) -> None:
    for event_type, count in result.events_by_type.items():
        with single_metric(
            name=MetricName.INGESTED_EVENTS, unit=MetricUnit.Count, value=count, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="type", value=event_type)
    metrics.add_metric(name=MetricName.INVALID_EVENTS, unit=MetricUnit.Count, value=result.invalid)
    metrics.add_metric(name=MetricName.DUPLICATE_EVENTS, unit=MetricUnit.Count, value=result.duplicates)
    metrics.add_metric(
        name=MetricName.DEAD_LETTERED_RECORDS, unit=MetricUnit.Count, value=result.dead_lettered
    )
    metrics.add_metric(
        name=MetricName.TRANSIENT_FAILURES, unit=MetricUnit.Count, value=len(result.failed_record_ids)
    )
    metrics.add_metric(name=MetricName.WRITE_LATENCY_MS, unit=MetricUnit.Milliseconds, value=result.write_ms)
    if result.iterator_age_ms is not None:
        metrics.add_metric(
            name=MetricName.ITERATOR_AGE_MS, unit=MetricUnit.Milliseconds, value=result.iterator_age_ms
        )
