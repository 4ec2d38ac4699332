"""A real Prometheus server and a Pushgateway (Debian's ``prometheus`` and ``prometheus-pushgateway``).

:class:`PrometheusServer` writes its ``prometheus.yml`` into its work directory: one job scraping the
local API's ``/metrics`` (``movierec-api``) and, when a Pushgateway is given, one scraping it with
``honor_labels`` (``pushgateway``: the training job's run metrics keep the ``job`` they were pushed
under). Prometheus has no "scrape now": :meth:`PrometheusServer.wait_for` polls the query API until a
query returns a series, with a deadline.

Module-level imports are stdlib only, like the rest of this package.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from infra.local.errors import UsageError
from infra.local.servers.process import HOST, POLL_INTERVAL_S, ChildServer

INSTALL_HINT = "apt-get install -y prometheus prometheus-pushgateway (or `make prometheus`)"
API_JOB = "movierec-api"
PUSHGATEWAY_JOB = "pushgateway"
TRAINING_JOB = "movierec-training"  # the job name the training run pushes under


def find_binary(name: str) -> Path:
    on_path = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/local/bin")
    if on_path is None:
        raise UsageError(f"no {name} found: {INSTALL_HINT}")
    return Path(on_path)


def prometheus_available() -> bool:
    """Both binaries are installed (``make prometheus`` installs them)."""
    try:
        find_binary("prometheus")
        find_binary("prometheus-pushgateway")
    except UsageError:
        return False
    return True


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def _ready(port: int) -> bool:
    try:
        status, _ = http_get(f"http://{HOST}:{port}/-/ready", timeout_s=0.5)
    except OSError:
        return False
    return status == 200


def scrape_config(
    api_targets: Sequence[str], pushgateway: str | None, *, scrape_interval_s: float = 15.0
) -> str:
    """``prometheus.yml``, as JSON (a YAML subset): the API's ``/metrics`` and the Pushgateway."""
    interval = f"{max(int(scrape_interval_s * 1000), 100)}ms"
    jobs: list[dict[str, Any]] = [
        {"job_name": API_JOB, "metrics_path": "/metrics", "static_configs": [{"targets": list(api_targets)}]}
    ]
    if pushgateway is not None:
        jobs.append(
            {
                "job_name": PUSHGATEWAY_JOB,
                "honor_labels": True,
                "static_configs": [{"targets": [pushgateway]}],
            }
        )
    config = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": jobs,
    }
    return json.dumps(config, indent=2) + "\n"


class PrometheusServer(ChildServer):
    """Prometheus 2.x on a port, scraping ``api_targets`` (``host:port``) and ``pushgateway``."""

    name = "prometheus"
    port_variable = "PROMETHEUS_PORT"

    def __init__(
        self,
        port: int | None = None,
        *,
        api_targets: Sequence[str] = (),
        pushgateway: str | None = None,
        scrape_interval_s: float = 15.0,
        work_dir: Path | None = None,
        detached: bool = False,
    ) -> None:
        super().__init__(port, work_dir=work_dir, detached=detached)
        self.api_targets = list(api_targets)
        self.pushgateway = pushgateway
        self.scrape_interval_s = scrape_interval_s

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.work_dir / "prometheus.yml"

    def build_command(self) -> list[str]:
        self.config_path.write_text(
            scrape_config(self.api_targets, self.pushgateway, scrape_interval_s=self.scrape_interval_s)
        )
        return [
            str(find_binary("prometheus")),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.work_dir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
            "--storage.tsdb.retention.time=2d",
        ]

    def answers(self) -> bool:
        return _ready(self.port)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}, ...]``)."""
        status, body = http_get(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise ValueError(f"Prometheus refused {promql!r}: {answer.get('error', body[:200])}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        """Poll the query until it returns a series (the next scrape brings it); TimeoutError after."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{promql!r} returned nothing within {timeout_s:.0f} s")
            time.sleep(max(POLL_INTERVAL_S, min(self.scrape_interval_s / 4, 0.25)))  # polling, bounded


class PushgatewayServer(ChildServer):
    """The Prometheus Pushgateway on a port; nothing persists across a restart."""

    name = "pushgateway"
    port_variable = "PUSHGATEWAY_PORT"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def build_command(self) -> list[str]:
        return [str(find_binary("prometheus-pushgateway")), f"--web.listen-address={HOST}:{self.port}"]

    def answers(self) -> bool:
        return _ready(self.port)

    def metrics_text(self) -> str:
        """What the Pushgateway exposes at ``/metrics``: every pushed group, plus its own metrics."""
        _, body = http_get(f"{self.url}/metrics")
        return body.decode()
