"""A real Prometheus scraping the local API's /metrics, and the training job's push to a Pushgateway.

Prometheus has no "scrape now": each test configures a short scrape interval and polls the query API
until the series appears, with a deadline (``PrometheusServer.wait_for``). The binaries come from
Debian's ``prometheus`` and ``prometheus-pushgateway`` (``make prometheus`` installs them; ``make test``
runs it), so the tests are skipped only on a machine where they are absent and could not be installed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from infra.local.apigw import HttpApiServer
from infra.local.bootstrap import bootstrap
from infra.local.runner import LocalApp
from infra.local.servers import PrometheusServer, PushgatewayServer, prometheus_available
from infra.local.servers.prometheus import API_JOB, TRAINING_JOB
from infra.local.template import DEFAULT_TEMPLATE
from movierec.observability import MetricName, metrics
from movierec.recommend.service import Tier
from training_job import pushgateway
from training_job.pipeline import metrics_flushed

pytestmark = pytest.mark.skipif(
    not prometheus_available(),
    reason="prometheus and prometheus-pushgateway are not installed and `make prometheus` could not "
    "install them (apt-get install -y prometheus prometheus-pushgateway needs root or sudo)",
)
SCRAPE_INTERVAL_S = 0.5
DEADLINE_S = 30.0


@pytest.fixture
def api_server(redis_client: redis.Redis, redis_url: str, aws_reset: str) -> Iterator[HttpApiServer]:
    """The template's API over an empty Redis: nothing is published, so /v1/popular falls back."""
    bootstrap(aws_reset, DEFAULT_TEMPLATE)
    app = LocalApp(DEFAULT_TEMPLATE, environ={"REDIS_URL": redis_url, "AWS_ENDPOINT_URL": aws_reset})
    server = HttpApiServer(app.gateway(), "127.0.0.1", 0, metrics=app.metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def only(result: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(result) == 1, result
    return result[0]


def test_prometheus_scrapes_the_request_count_and_latency_series_after_a_request(
    api_server: HttpApiServer,
) -> None:
    answer = requests.get(f"{api_server.url}/v1/popular?k=1", timeout=30)
    status = str(answer.status_code)
    target = api_server.url.removeprefix("http://")
    with PrometheusServer(api_targets=[target], scrape_interval_s=SCRAPE_INTERVAL_S) as prometheus:
        requests_total = only(
            prometheus.wait_for('movierec_http_requests_total{route="/v1/popular"}', DEADLINE_S)
        )
        assert requests_total["metric"] == {
            "__name__": "movierec_http_requests_total",
            "job": API_JOB,
            "instance": target,
            "route": "/v1/popular",
            "method": "GET",
            "status": status,
        }
        assert float(requests_total["value"][1]) == 1.0
        buckets = prometheus.wait_for(
            'movierec_http_request_duration_seconds_bucket{route="/v1/popular",le="+Inf"}', DEADLINE_S
        )
        assert float(only(buckets)["value"][1]) == 1.0
        # The function's own EMF metric, one sample per request under the tier that served it.
        tier = only(prometheus.wait_for("movierec_tier_latency_ms_count", DEADLINE_S))
        assert tier["metric"]["job"] == API_JOB
        assert tier["metric"]["tier"] in {t.value for t in Tier}
        assert float(tier["value"][1]) == 1.0
        assert prometheus.query('sum(movierec_tier_latency_ms_bucket{le="+Inf"})')
        # The scrape itself is not an API request.
        assert not prometheus.query('movierec_http_requests_total{route="unmatched"}')


def test_the_training_run_pushes_its_metrics_to_the_pushgateway_and_prometheus_scrapes_them() -> None:
    def run() -> int:
        with metrics_flushed():  # what training_job.pipeline.main wraps a run in
            metrics.add_metric(name=MetricName.MODEL_NDCG_AT_10, unit="None", value=0.375)
            metrics.add_metric(name=MetricName.MODEL_PUBLISHED, unit="Count", value=1)
        return 0

    with PushgatewayServer() as gateway:
        assert pushgateway.run_and_push(run, gateway.url, stage="all") == 0
        text = gateway.metrics_text()
        labels = f'{{instance="",job="{TRAINING_JOB}",stage="all"}}'
        assert f"movierec_model_ndcg_at_10{labels} 0.375" in text
        assert f"movierec_model_published{labels} 1" in text
        assert f"movierec_training_gate_passed{labels} 1" in text
        assert f"movierec_training_exit_status{labels} 0" in text
        assert f"movierec_training_duration_seconds{labels}" in text
        with PrometheusServer(pushgateway=gateway.address, scrape_interval_s=SCRAPE_INTERVAL_S) as prometheus:
            ndcg = only(prometheus.wait_for("movierec_model_ndcg_at_10", DEADLINE_S))
            assert ndcg["metric"]["job"] == TRAINING_JOB  # honor_labels: the pushed job, not "pushgateway"
            assert float(ndcg["value"][1]) == 0.375


def test_an_unreachable_pushgateway_does_not_fail_the_run() -> None:
    assert pushgateway.run_and_push(lambda: 3, "http://127.0.0.1:9", stage="fit") == 3
