"""The one place that creates the Logger, Tracer and Metrics, and names every custom metric.

Powertools takes the service name from ``POWERTOOLS_SERVICE_NAME``, which ``template.yaml`` sets per
function. The metric namespace is fixed here because dashboards and alarms are written against it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, TypeVar

import orjson
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

METRIC_NAMESPACE = "MovieRec"

# Called with each EMF document this process flushes, before it is printed. Empty in the functions (the
# hot path pays one test of an empty list); the training job adds one to push its run metrics to a
# Prometheus Pushgateway (training_job/pushgateway.py).
flush_listeners: list[Callable[[Mapping[str, Any]], None]] = []


class _OrjsonEMFProvider(AmazonCloudWatchEMFProvider):
    """Powertools' CloudWatch EMF provider, writing each document with orjson: ``json.dumps`` took
    ~6 us of every request, a fortieth of the cached recommendation path (docs/benchmarks.md)."""

    def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
        if not self.metric_set or is_metrics_disabled():
            super().flush_metrics(raise_on_empty_metrics)  # Powertools' own warning, error or no-op
            return
        document = self.serialize_metric_set()
        for listener in flush_listeners:
            listener(document)
        # Non-str keys are written as json.dumps would write them (a str enum's value, a number's text).
        print(orjson.dumps(document, option=orjson.OPT_NON_STR_KEYS).decode())
        self.clear_metrics()


logger = Logger()
tracer = Tracer()
metrics = Metrics(provider=_OrjsonEMFProvider(namespace=METRIC_NAMESPACE))

Response = TypeVar("Response")


def correlate_http_request(
    handler: Callable[[Mapping[str, Any], Any], Response],
) -> Callable[[Mapping[str, Any], Any], Response]:
    """Every log line of an API Gateway request carries the request's id as ``correlation_id``.

    Powertools' ``correlation_id_path`` does the same by evaluating a JMESPath expression per request:
    ~25 us here, a tenth of the cached recommendation path. The id has one fixed place in both API
    Gateway payload versions, so a lookup does.
    """

    @functools.wraps(handler)
    def correlated(event: Mapping[str, Any], context: Any) -> Response:
        request_context = event.get("requestContext")
        request_id = request_context.get("requestId") if isinstance(request_context, dict) else None
        logger.set_correlation_id(request_id if isinstance(request_id, str) else None)
        return handler(event, context)

    return correlated


def trace_lambda_handler(
    handler: Callable[[Any, Any], Response],
) -> Callable[[Any, Any], Response]:
    """``tracer.capture_lambda_handler`` (the response left out of the trace) when tracing is on.

    When it is off (outside Lambda, under SAM local, or ``POWERTOOLS_TRACE_DISABLED``), Powertools still
    builds the X-Ray SDK's dummy segment and subsegment on every invocation: ~30 us of the cached
    recommendation path's ~230 (docs/benchmarks.md). Whether tracing is on is settled when the Tracer is
    created, once per container, so the handler is wrapped or not then too.
    """
    if tracer.disabled:
        return handler
    return tracer.capture_lambda_handler(handler, capture_response=False)


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
    TIER_LATENCY_MS = "TierLatencyMs"  # one sample per request, so its SampleCount counts requests per tier
    FALLBACK = "Fallback"
    FALLBACK_REASON = "FallbackReason"  # one per fallback, dimensions from_tier and reason
    COLD_START = "ColdStart"
    # training
    MODEL_PUBLISHED = "ModelPublished"
    GATE_REJECTED = "GateRejected"
    MODEL_NDCG_AT_10 = "ModelNdcgAt10"
    # online quality (the attribution stage; docs/experimentation.md): overall with dimension service, and
    # per tier, model_version and variant in EMF documents of their own
    ONLINE_CTR_AT_K = "OnlineCtrAtK"
    ONLINE_GROUP_CTR_AT_K = "OnlineGroupCtrAtK"  # dimensions tier, model_version, variant
    ONLINE_WATCH_THROUGH_AT_K = "OnlineWatchThroughAtK"
    ONLINE_COVERAGE = "OnlineCoverage"
    ONLINE_IMPRESSED_LISTS = "OnlineImpressedLists"
    EXPERIMENT_CTR_DIFFERENCE = "ExperimentCtrDifference"  # a variant minus the control, dimension variant
