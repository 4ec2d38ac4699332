"""moto in server mode as a child process, or a LocalStack already running on the port.

Module-level imports are stdlib only: ``.venv-mongo`` (Python 3.13, without our dependencies)
imports this package to serve mongoeco (``python -m infra.local.servers mongoeco``).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from infra.local.servers.process import HOST, START_TIMEOUT_S, ChildServer, accepts_connections


def http_request(url: str, method: str = "GET", timeout_s: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def is_localstack(endpoint_url: str) -> bool:
    """Whether a LocalStack answers at ``endpoint_url`` (its health endpoint lists services)."""
    try:
        status, body = http_request(f"{endpoint_url.rstrip('/')}/_localstack/health")
        health = json.loads(body)
    except (OSError, ValueError):
        return False
    return status == 200 and isinstance(health, dict) and "services" in health


def reset_aws_endpoint(endpoint_url: str, *, localstack: bool | None = None) -> None:
    """Forget every AWS resource at a moto or LocalStack endpoint.

    LocalStack's state reset exists only in some editions: where it is missing this warns instead.
    """
    base = endpoint_url.rstrip("/")
    if localstack is None:
        localstack = is_localstack(base)
    if localstack:
        status, _ = http_request(f"{base}/_localstack/state/reset", method="POST")
        if status >= 400:
            warnings.warn(
                f"LocalStack at {base} did not reset its state (HTTP {status}); tests share AWS state",
                stacklevel=2,
            )
        return
    status, body = http_request(f"{base}/moto-api/reset", method="POST")
    if status != 200:
        raise RuntimeError(f"moto reset at {base} failed with HTTP {status}: {body[:200]!r}")


class MotoServer(ChildServer):
    """moto in server mode as a child process; an already running LocalStack on the port is used instead."""

    name = "moto"
    port_variable = "MOTO_PORT"

    def __init__(self, port: int | None = None, *, work_dir: Path | None = None, detached: bool = False):
        super().__init__(port, work_dir=work_dir, detached=detached)
        self.localstack = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.answers() if self.localstack else super().running

    def launch(self) -> None:
        if not self.running and accepts_connections(self.port) and is_localstack(self.url):
            self.localstack = True
            return
        super().launch()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if not self.localstack:
            super().wait_ready(timeout_s)

    def build_command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "--host", HOST, "--port", str(self.port)]

    def answers(self) -> bool:
        path = "/_localstack/health" if self.localstack else "/moto-api/config"
        try:
            status, _ = http_request(f"{self.url}{path}", timeout_s=1.0)
        except OSError:
            return False
        return status < 500

    def reset(self) -> None:
        reset_aws_endpoint(self.url, localstack=self.localstack)

    def stop(self) -> None:
        if not self.localstack:
            super().stop()
