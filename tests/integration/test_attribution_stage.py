"""The attribute stage end to end: served lists delivered to the bucket (as the local runner and
Firehose deliver them), events stored by ingest's own adapter in MongoDB, the report and the metrics."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pymongo
import pytest

from infra.local.bootstrap import bootstrap
from infra.local.served_log import s3_delivery
from infra.local.template import DEFAULT_TEMPLATE
from movierec.events import EVENT_ADAPTER, Event
from movierec.observability import metrics
from movierec.served import served_document
from movierec.stores.blobs import BlobStore
from movierec.stores.documents import EventDocuments
from movierec.stores.experiments import blob_flags
from training_job.attribution_stage import run_attribution

NOW = 1_750_000_000.0
DAY = 86_400.0


def event(kind: str, at: float, rid: str | None, **fields: object) -> Event:
    document = {
        "type": kind,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        "user_id": "u1",
        **({"recommendation_id": rid} if rid else {}),
        **fields,
    }
    return EVENT_ADAPTER.validate_python(document)


def test_the_stage_reports_the_period_whose_window_has_closed(
    aws_reset: str, mongo_uri: str, mongo_database_name: str
) -> None:
    bucket = bootstrap(aws_reset, DEFAULT_TEMPLATE).bucket_name
    s3 = boto3.client("s3")
    blobs = BlobStore(bucket, s3)
    served_at = NOW - DAY - 3600  # inside [now - 2 days, now - 1 day): its window has closed
    too_recent = NOW - 3600  # its window is still open: next run's
    delivery = s3_delivery(s3, bucket)
    for rid, at, variant in [
        ("a", served_at, "champion"),
        ("b", served_at, "challenger"),
        ("c", too_recent, None),
    ]:
        record = served_document(
            recommendation_id=rid,
            served_at=at,
            user_id="u1",
            tier="personalized",
            model_version="v1",
            variant=variant,
            experiment="exp" if variant else None,
            movie_ids=[1, 2, 3],
        )
        delivery.observe_emf({"_aws": {}, "served_list": record})
    delivery.flush()
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_uri, tz_aware=True
    )  # as connect_mongo
    database = client[mongo_database_name]
    documents = EventDocuments(database)
    database["movies"].insert_many([{"_id": m} for m in range(1, 11)])
    documents.store_events(
        [
            event("impression", served_at + 1, "a", movie_ids=[1, 2, 3]),
            event("impression", served_at + 1, "b", movie_ids=[1, 2, 3]),
            event("click", served_at + 60, "b", movie_id=2, position=1),
            event("watch", served_at + 600, "b", movie_id=2, seconds_watched=6000, completion=1.0),
            event("impression", too_recent + 1, "c", movie_ids=[1, 2, 3]),
            event("click", too_recent + 5, "c", movie_id=1),
        ]
    )

    result = run_attribution(blobs, documents, "runs/r1/report/", now=NOW, flags=blob_flags(blobs))
    metrics.clear_metrics()

    assert (result.served, result.impressed) == (2, 2)
    assert result.ctr.estimate == pytest.approx(0.5)
    assert result.watch_through.estimate == pytest.approx(0.5)
    assert result.coverage == pytest.approx(0.3)
    (comparison,) = result.comparisons
    assert (comparison.variant, comparison.control) == ("challenger", "champion")
    assert comparison.ctr_difference.estimate == pytest.approx(1.0)
    assert json.loads(blobs.get("runs/r1/report/online.json") or b"{}")["impressed"] == 2
    assert "challenger vs champion" in (blobs.get("runs/r1/report/online.md") or b"").decode()
