"""The Grafana dashboard over PromQL (infra/grafana/movierec-prometheus.json) against what the local
exporter (infra/local/metrics.py) and the training job's push (training_job/pushgateway.py) export."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.local.metrics import LocalMetrics, exported_metric_names
from movierec.observability import MetricName
from training_job.pushgateway import PUSHED_NAMES

DASHBOARD = Path(__file__).resolve().parents[2] / "infra" / "grafana" / "movierec-prometheus.json"
TRAINING = {MetricName.MODEL_PUBLISHED, MetricName.GATE_REJECTED, MetricName.MODEL_NDCG_AT_10}
METRIC_IN_QUERY = re.compile(r"\b(movierec_[a-zA-Z0-9_]+)\b")


def emf_document(name: str) -> dict[str, Any]:
    """One EMF document as the functions print it: milliseconds for the *Ms metrics, counts otherwise."""
    unit = "Milliseconds" if name.endswith("Ms") else "Count"
    return {
        "_aws": {"CloudWatchMetrics": [{"Namespace": "MovieRec", "Dimensions": [["service"]],
                                        "Metrics": [{"Name": name, "Unit": unit}]}]},
        "service": "recommend",
        name: [1.0],
    }  # fmt: skip


@pytest.fixture(scope="module")
def exported() -> set[str]:
    metrics = LocalMetrics()
    metrics.observe_request("/v1/popular", "GET", 200, 0.01)
    for name in MetricName:
        if name not in TRAINING:  # the job is not behind the runner: it pushes (PUSHED_NAMES)
            metrics.observe_emf(emf_document(name))
    return exported_metric_names(metrics) | PUSHED_NAMES


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_parses_and_every_panel_has_a_query() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["type"] == "prometheus"
        assert panel["targets"], panel["title"]
        assert all(target["expr"].strip() for target in panel["targets"]), panel["title"]


@pytest.mark.parametrize(("title", "expr"), queries())
def test_every_query_names_only_metrics_the_exporter_exports(
    title: str, expr: str, exported: set[str]
) -> None:
    names = set(METRIC_IN_QUERY.findall(expr))
    assert names, f"{title}: {expr} names no movierec metric"
    assert names <= exported, f"{title}: {sorted(names - exported)} are not exported"
