"""``sam local start-api``'s server: a ThreadingHTTPServer in front of :class:`HttpApiGateway`."""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from infra.local.apigw.gateway import HttpApiGateway
from infra.local.apigw.payload import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from infra.local.metrics import LocalMetrics

METRICS_PATH = "/metrics"


class _RequestHandler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without this a keep-alive client waits ~40 ms for the
    # delayed ACK before the body arrives.
    disable_nagle_algorithm = True
    server: HttpApiServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        started = time.perf_counter()
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        request = HttpRequest(
            method=self.command,
            raw_path=url.path or "/",
            raw_query=url.query,
            headers=list(self.headers.items()),
            body=self.rfile.read(length) if length > 0 else b"",
            source_ip=self.client_address[0],
            protocol=self.request_version,
        )
        metrics = self.server.metrics
        if metrics is not None and request.method in {"GET", "HEAD"} and request.raw_path == METRICS_PATH:
            # Prometheus's scrape: not an API route, so not counted as a request.
            response = HttpResponse(200, [("content-type", metrics.content_type)], metrics.exposition())
        else:
            host = self.headers.get("host") or self.server.url.removeprefix("http://")
            response = self.server.gateway.handle(request, domain_name=host)
            if metrics is not None:
                route = self.server.gateway.route_path(request)
                metrics.observe_request(route, request.method, response.status, time.perf_counter() - started)
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # http.server dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = _serve  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log is not None:
            self.server.access_log(f"{self.address_string()} {format % args}")


class HttpApiServer(ThreadingHTTPServer):
    """``sam local start-api`` for HTTP APIs; ``port=0`` picks a free port (see ``server_address``).

    With ``metrics`` (``LocalApp.metrics``) it also serves ``GET /metrics`` in Prometheus's text format and
    counts and times every request by route.
    """

    daemon_threads = True

    def __init__(
        self,
        gateway: HttpApiGateway,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        access_log: Callable[[str], None] | None = None,
        metrics: LocalMetrics | None = None,
    ) -> None:
        self.gateway = gateway
        self.access_log = access_log
        self.metrics = metrics
        super().__init__((host, port), _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"
