"""The local runner's Prometheus view of the functions' EMF output: it observes, and never breaks the
function it observes."""

from __future__ import annotations

import io
import json
from typing import Any

from infra.local.metrics import EmfTap, LocalMetrics


def emf(name: str, value: float, **dimensions: str) -> dict[str, Any]:
    return {
        "_aws": {
            "Timestamp": 0,
            "CloudWatchMetrics": [
                {
                    "Namespace": "MovieRec",
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": "Count"}],
                }
            ],
        },
        name: [value],
        **dimensions,
    }


def test_a_metric_first_seen_without_dimensions_still_takes_documents_with_them() -> None:
    metrics = LocalMetrics()
    metrics.observe_emf(emf("InvalidEvents", 2))  # no dimensions: e.g. a logger without a service name
    metrics.observe_emf(emf("InvalidEvents", 3, service="ingest"))
    assert b"movierec_invalid_events_total 5.0" in metrics.exposition()


def test_the_tap_writes_through_and_swallows_what_its_observer_raises() -> None:
    def observer(_document: Any) -> None:
        raise ValueError("an observer's own failure")

    inner = io.StringIO()
    tap = EmfTap(inner, observer)
    line = json.dumps(emf("InvalidEvents", 1, service="ingest")) + "\n"
    assert tap.write(line) == len(line)  # no exception reaches the function that printed
    assert inner.getvalue() == line
