"""The run's metrics to a Prometheus Pushgateway, when ``PUSHGATEWAY_URL`` is set (TrainingSettings).

A batch job ends before any scrape could reach it, so it pushes: once, when the run ends, under the job
``movierec-training`` and the grouping key ``stage`` (a push replaces the previous run's group of that
stage). What it pushes is what the run flushed as EMF (``ModelNdcgAt10``, ``ModelPublished``,
``GateRejected``: ``movierec.observability.flush_listeners`` hands them over) plus the run's duration, exit
status, end time and the gate's decision. An unreachable gateway is a warning, never a failed run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from pydantic import ValidationError

from movierec.config import TrainingSettings
from movierec.observability import MetricName, flush_listeners, logger

JOB = "movierec-training"
PUSH_TIMEOUT_S = 10.0
EXIT_GATE_REJECTED = 3  # training_job.pipeline's exit status when the gate kept the published model

# The EMF metrics a run flushes, by the name the Pushgateway exposes them under.
PUSHED_EMF = {
    MetricName.MODEL_NDCG_AT_10: ("movierec_model_ndcg_at_10", "NDCG@10 of the model this run trained."),
    MetricName.MODEL_PUBLISHED: ("movierec_model_published", "1 when this run published its model."),
    MetricName.GATE_REJECTED: ("movierec_gate_rejected", "1 when the quality gate kept the published model."),
}
DURATION = "movierec_training_duration_seconds"
EXIT_STATUS = "movierec_training_exit_status"
FINISHED = "movierec_training_last_run_timestamp_seconds"
GATE_PASSED = "movierec_training_gate_passed"
PUSHED_NAMES = frozenset({DURATION, EXIT_STATUS, FINISHED, GATE_PASSED} | {n for n, _ in PUSHED_EMF.values()})


def configured_url() -> str | None:
    """``PUSHGATEWAY_URL`` from the job's settings; None when unset or the settings are invalid (the run
    itself reports bad settings)."""
    try:
        return TrainingSettings().pushgateway_url
    except ValidationError:
        return None


def emf_values(documents: list[Mapping[str, Any]]) -> dict[str, float]:
    """The last value of each metric the documents declare, by EMF name."""
    values: dict[str, float] = {}
    for document in documents:
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", ()):
            for metric in directive.get("Metrics", ()):
                raw = document.get(metric.get("Name"))
                raw = raw[-1] if isinstance(raw, list) and raw else raw
                if isinstance(raw, int | float) and not isinstance(raw, bool):
                    values[metric["Name"]] = float(raw)
    return values


def run_metrics(
    documents: list[Mapping[str, Any]], *, duration_s: float, exit_status: int, finished_at: float
) -> CollectorRegistry:
    registry = CollectorRegistry()

    def gauge(name: str, documentation: str, value: float) -> None:
        Gauge(name, documentation, registry=registry).set(value)

    gauge(DURATION, "How long the run took, start to end.", duration_s)
    gauge(EXIT_STATUS, "The run's exit status: 0 done, 3 gate rejected, 2 bad input, 1 failed.", exit_status)
    gauge(FINISHED, "When the run ended (Unix time).", finished_at)
    values = emf_values(documents)
    for emf_name, (name, documentation) in PUSHED_EMF.items():
        if emf_name in values:
            gauge(name, documentation, values[emf_name])
    if MetricName.MODEL_NDCG_AT_10 in values:  # a model was evaluated, so the gate decided
        passed = exit_status != EXIT_GATE_REJECTED and MetricName.GATE_REJECTED not in values
        gauge(
            GATE_PASSED,
            "1 when the quality gate passed this run's model, 0 when it kept the old one.",
            passed,
        )
    return registry


def run_and_push(run: Callable[[], int], url: str | None, *, stage: str) -> int:
    """``run()``'s exit status; with a URL, its metrics are pushed to that Pushgateway when it ends."""
    if url is None:
        return run()
    documents: list[Mapping[str, Any]] = []
    flush_listeners.append(documents.append)
    started = time.monotonic()
    exit_status = 1
    try:
        exit_status = run()
        return exit_status
    finally:
        flush_listeners.remove(documents.append)
        registry = run_metrics(
            documents, duration_s=time.monotonic() - started, exit_status=exit_status, finished_at=time.time()
        )
        try:
            push_to_gateway(
                url, job=JOB, registry=registry, grouping_key={"stage": stage}, timeout=PUSH_TIMEOUT_S
            )
        except OSError as error:
            logger.warning(
                "could not push the run's metrics to the Pushgateway", extra={"url": url, "error": str(error)}
            )
        else:
            logger.info(
                "pushed the run's metrics to the Pushgateway", extra={"url": url, "job": JOB, "stage": stage}
            )
