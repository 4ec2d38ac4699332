"""Ingest Lambda: Kinesis Data Streams or Kafka (MSK) batches -> MongoDB and real-time Redis state."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from movierec.config import IngestSettings
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.wiring import build_ingest_service
from movierec.observability import logger, metrics, tracer

# Created once per container and reused by every invocation.
service = build_ingest_service(IngestSettings())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return handle_stream_event(event, context, service.ingest)
