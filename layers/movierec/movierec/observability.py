"""The one place that creates the Logger, Tracer and Metrics, and names every custom metric.

Powertools takes the service name from ``POWERTOOLS_SERVICE_NAME``, which ``template.yaml`` sets per
function. The metric namespace is fixed here because dashboards and alarms are written against it.
"""

from __future__ import annotations

from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics, Tracer

METRIC_NAMESPACE = "MovieRec"

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace=METRIC_NAMESPACE)


class MetricName(StrEnum):
    """Every custom metric the code emits. Dashboards and alarms are checked against this list."""

    # ingest
    INGESTED_EVENTS = "IngestedEvents"
    INVALID_EVENTS = "InvalidEvents"
    DUPLICATE_EVENTS = "DuplicateEvents"
    DEAD_LETTERED_RECORDS = "DeadLetteredRecords"
    TRANSIENT_FAILURES = "TransientFailures"
    WRITE_LATENCY_MS = "WriteLatencyMs"
    ITERATOR_AGE_MS = "IteratorAgeMs"
    # recommend
    SERVED_BY_TIER = "ServedByTier"
    TIER_LATENCY_MS = "TierLatencyMs"
    FALLBACK = "Fallback"
    FALLBACK_REASON = "FallbackReason"  # one per fallback, dimensions from_tier and reason
    COLD_START = "ColdStart"
    # training
    MODEL_PUBLISHED = "ModelPublished"
    GATE_REJECTED = "GateRejected"
    MODEL_NDCG_AT_10 = "ModelNdcgAt10"
