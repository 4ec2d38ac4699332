"""``train --stage attribute``: the served lists of one period joined to the engagement they earned.

The period is ``[until - lookback, until)`` with ``until = now - window``: every list in it has had its
whole attribution window by now. Served lists come from ``s3://$ARTIFACT_BUCKET/served/`` (Firehose's
delivery of the recommend function's served-list records, or the local runner's), events from MongoDB.
The result goes to the run's report (``report/online.json``, ``report/online.md``) and to CloudWatch as
EMF (``MetricName.ONLINE_*``; the overall CTR feeds the online-quality alarm).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from movierec.events import ClickEvent, Event, ImpressionEvent, RatingEvent, WatchEvent, type_names
from movierec.experiments import Experiments, FlagSource
from movierec.observability import METRIC_NAMESPACE, MetricName, logger, metrics
from movierec.served import SERVED_PREFIX, ServedList, parse_lines
from movierec.stores.blobs import BlobStore
from movierec.stores.documents import EventDocuments
from training_job.attribution import (
    DEFAULT_K,
    DEFAULT_WINDOW_SECONDS,
    Attribution,
    attribute,
    report_markdown,
)

ATTRIBUTED_TYPES = type_names([ImpressionEvent, ClickEvent, WatchEvent, RatingEvent])
DEFAULT_LOOKBACK_SECONDS = 24 * 3600


def served_lists(blobs: BlobStore, since: float, until: float) -> list[ServedList]:
    """Records served in ``[since, until)``. Objects are read from the hour before ``since`` on
    (Firehose names them ``served/YYYY/MM/DD/HH/`` by arrival, which is after serving)."""
    start = datetime.fromtimestamp(since, UTC) - timedelta(hours=1)
    after = f"{SERVED_PREFIX}{start:%Y/%m/%d/%H}/"
    records: list[ServedList] = []
    for key in blobs.keys(SERVED_PREFIX, start_after=after):
        body = blobs.get(key)
        if body is not None:
            records.extend(r for r in parse_lines(body) if since <= r.served_at < until)
    return records


def engagement(documents: EventDocuments, since: float) -> Iterator[Event]:
    for page in documents.read_events(ATTRIBUTED_TYPES, since=datetime.fromtimestamp(since, UTC)):
        yield from page.events


def run_attribution(
    blobs: BlobStore,
    documents: EventDocuments,
    report_prefix: str,
    *,
    flags: FlagSource | None = None,
    now: float | None = None,
    window_seconds: float = DEFAULT_WINDOW_SECONDS,
    lookback_seconds: float = DEFAULT_LOOKBACK_SECONDS,
    k: int = DEFAULT_K,
) -> Attribution:
    until = (time.time() if now is None else now) - window_seconds
    since = until - lookback_seconds
    served = served_lists(blobs, since, until)
    experiment = Experiments(flags).current() if served and flags is not None else None
    controls = {experiment.name: experiment.control} if experiment else {}
    result = attribute(
        served,
        engagement(documents, since),
        catalogue_size=documents.count_movies(),
        k=k,
        window_seconds=window_seconds,
        controls=controls,
    )
    blobs.put(
        report_prefix + "online.json", json.dumps(result.to_dict(), indent=2).encode(), "application/json"
    )
    blobs.put(report_prefix + "online.md", report_markdown(result).encode(), "text/markdown")
    record_metrics(result)
    logger.info(
        "online metrics",
        extra={
            "since": since,
            "until": until,
            "served": result.served,
            "impressed": result.impressed,
            "ctr": result.ctr.estimate,
            "comparisons": [
                {
                    "variant": c.variant,
                    "difference": c.ctr_difference.estimate,
                    "significant": c.ctr_difference.significant,
                }
                for c in result.comparisons
            ],
            "report": blobs.uri(report_prefix + "online.md"),
        },
    )
    return result


def record_metrics(result: Attribution) -> None:
    """Overall rates on the job's metrics (dimension service: what the alarm watches), then one EMF
    document per group and per comparison, with their dimensions. Nothing is emitted for an empty
    period: no impressions is no measurement, not a CTR of zero."""
    if result.impressed == 0:
        return
    metrics.add_metric(name=MetricName.ONLINE_CTR_AT_K, unit=MetricUnit.NoUnit, value=result.ctr.estimate)
    metrics.add_metric(
        name=MetricName.ONLINE_WATCH_THROUGH_AT_K, unit=MetricUnit.NoUnit, value=result.watch_through.estimate
    )
    metrics.add_metric(name=MetricName.ONLINE_COVERAGE, unit=MetricUnit.NoUnit, value=result.coverage)
    metrics.add_metric(name=MetricName.ONLINE_IMPRESSED_LISTS, unit=MetricUnit.Count, value=result.impressed)
    for group in result.groups:
        if group.impressed == 0:
            continue
        with single_metric(
            name=MetricName.ONLINE_GROUP_CTR_AT_K,
            unit=MetricUnit.NoUnit,
            value=group.ctr.estimate,
            namespace=METRIC_NAMESPACE,
        ) as metric:
            metric.add_dimension(name="tier", value=group.tier)
            metric.add_dimension(name="model_version", value=group.model_version or "none")
            metric.add_dimension(name="variant", value=group.variant or "none")
            metric.add_metadata(key="watch_through", value=group.watch_through.estimate)
            metric.add_metadata(key="coverage", value=group.coverage)
            metric.add_metadata(key="impressed", value=group.impressed)
    for comparison in result.comparisons:
        with single_metric(
            name=MetricName.EXPERIMENT_CTR_DIFFERENCE,
            unit=MetricUnit.NoUnit,
            value=comparison.ctr_difference.estimate,
            namespace=METRIC_NAMESPACE,
        ) as metric:
            metric.add_dimension(name="experiment", value=comparison.experiment)
            metric.add_dimension(name="variant", value=comparison.variant)
            metric.add_metadata(
                key="interval", value=[comparison.ctr_difference.low, comparison.ctr_difference.high]
            )
            metric.add_metadata(key="significant", value=comparison.ctr_difference.significant)
