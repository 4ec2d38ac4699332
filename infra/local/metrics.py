"""The local runner's ``/metrics``: the functions' EMF metrics and the API's own, in Prometheus form.

On AWS the functions' metrics are EMF documents in their logs, which CloudWatch turns into metrics
(docs/operations.md, "Prometheus", has the path to Amazon Managed Service for Prometheus). Locally the
same documents pass through :class:`EmfTap` on their way to the log: each one is read back and recorded
here, so nothing in a function changes and no metric costs a handler a network call. A metric in
milliseconds becomes a histogram (``movierec_tier_latency_ms_bucket{service,tier,le}``), a count a counter
(``movierec_fallback_total``), anything else a gauge; the EMF dimensions are the labels. The gateway adds
``movierec_http_requests_total{route,method,status}`` and ``movierec_http_request_duration_seconds``.
"""

from __future__ import annotations

import io
import json
import re
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

PREFIX = "movierec_"
# Milliseconds, the serving deadline's scale: the default deadline is well under 250 ms.
MS_BUCKETS = (0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
HTTP_REQUESTS = PREFIX + "http_requests"  # the counter; its series is ..._total
HTTP_DURATION = PREFIX + "http_request_duration_seconds"
UNMATCHED_ROUTE = "unmatched"

_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[a-zA-Z])(?=[0-9])")


def prometheus_name(emf_name: str) -> str:
    """``TierLatencyMs`` -> ``movierec_tier_latency_ms``, ``ModelNdcgAt10`` -> ``movierec_model_ndcg_at_10``.

    Like CloudWatch, Prometheus keeps the EMF unit in the name; a histogram's buckets are milliseconds.
    """
    return PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", _WORD.sub("_", emf_name)).lower()


def series_name(emf_name: str, unit: str) -> str:
    """The series a dashboard queries for an EMF metric of this unit (histograms: add ``_bucket``)."""
    base = prometheus_name(emf_name)
    return base + "_total" if unit == "Count" else base


def emf_samples(document: Mapping[str, Any]) -> list[tuple[str, str, dict[str, str], list[float]]]:
    """(metric name, unit, dimensions, values) for each metric an EMF document declares."""
    aws = document.get("_aws")
    if not isinstance(aws, Mapping):
        return []
    samples = []
    for directive in aws.get("CloudWatchMetrics") or ():
        dimension_names = sorted({str(name) for group in directive.get("Dimensions") or () for name in group})
        labels = {name: str(document.get(name, "")) for name in dimension_names}
        for metric in directive.get("Metrics") or ():
            name = metric.get("Name")
            raw = document.get(name) if isinstance(name, str) else None
            values = raw if isinstance(raw, list) else [raw]
            numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
            if numbers:
                samples.append((name, str(metric.get("Unit", "None")), labels, numbers))
    return samples


class LocalMetrics:
    """A Prometheus registry fed by EMF documents and by the gateway; ``exposition()`` is ``/metrics``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._emf: dict[str, tuple[Counter | Gauge | Histogram, tuple[str, ...]]] = {}
        self.requests = Counter(
            HTTP_REQUESTS,
            "Requests the local API answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            HTTP_DURATION,
            "Time the local API took to answer, by route template (the function's run included).",
            ("route", "method"),
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.duration.labels(route=route, method=method).observe(seconds)

    def observe_emf(self, document: Mapping[str, Any]) -> None:
        for name, unit, labels, values in emf_samples(document):
            metric, label_names = self._emf_metric(name, unit, tuple(labels))
            # A metric keeps the labels it was first seen with; another dimension set fills or drops
            # (a metric first seen without dimensions has no children: it is observed itself).
            child = (
                metric.labels(**{label: labels.get(label, "") for label in label_names})
                if label_names
                else metric
            )
            for value in values:
                if isinstance(child, Histogram):
                    child.observe(value)
                elif isinstance(child, Counter):
                    child.inc(max(value, 0.0))
                else:
                    child.set(value)

    def _emf_metric(
        self, name: str, unit: str, label_names: tuple[str, ...]
    ) -> tuple[Counter | Gauge | Histogram, tuple[str, ...]]:
        with self._lock:
            known = self._emf.get(name)
            if known is not None:
                return known
            documentation = f"The functions' EMF metric {name} ({unit})."
            base = prometheus_name(name)
            metric: Counter | Gauge | Histogram
            if unit == "Milliseconds":
                metric = Histogram(
                    base, documentation, label_names, buckets=MS_BUCKETS, registry=self.registry
                )
            elif unit == "Count":
                metric = Counter(base, documentation, label_names, registry=self.registry)
            else:
                metric = Gauge(base, documentation, label_names, registry=self.registry)
            self._emf[name] = (metric, label_names)
            return metric, label_names

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def tap(self, inner: TextIO) -> EmfTap:
        return EmfTap(inner, self.observe_emf)


class EmfTap(io.TextIOBase):
    """A text stream that writes through to ``inner`` and hands every EMF line to ``on_document``."""

    def __init__(self, inner: TextIO, on_document: Callable[[Mapping[str, Any]], None]) -> None:
        super().__init__()
        self.inner = inner
        self.on_document = on_document
        self._pending = ""
        self._warned = False

    def write(self, text: str) -> int:
        written = self.inner.write(text)
        self._pending += text
        if "\n" in self._pending:
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._read(line)
        return written

    def _read(self, line: str) -> None:
        if '"_aws"' not in line:
            return
        try:
            document = json.loads(line)
        except ValueError:
            return
        if not isinstance(document, dict):
            return
        try:
            self.on_document(document)
        except Exception as error:  # an observer: whatever it does, the function it watches must not fail
            if not self._warned:
                self._warned = True
                print(f"[local metrics] an EMF document was not recorded: {error!r}", file=sys.stderr)

    def flush(self) -> None:
        self.inner.flush()

    def writable(self) -> bool:
        return True


def exported_metric_names(metrics: LocalMetrics) -> set[str]:
    """Every series name the registry can expose (``_total``, ``_bucket``, ``_count``, ``_sum``)."""
    names: set[str] = set()
    for family in metrics.registry.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    return names


def emf_series(names: Sequence[tuple[str, str]]) -> set[str]:
    """The series the EMF metrics (name, unit) become, as :meth:`LocalMetrics.observe_emf` names them."""
    series: set[str] = set()
    for name, unit in names:
        base = prometheus_name(name)
        if unit == "Milliseconds":
            series.update({base + "_bucket", base + "_count", base + "_sum"})
        elif unit == "Count":
            series.add(base + "_total")
        else:
            series.add(base)
    return series
