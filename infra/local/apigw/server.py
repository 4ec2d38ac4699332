"""``sam local start-api``'s server: a ThreadingHTTPServer in front of :class:`HttpApiGateway`."""

from __future__ import annotations

from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from infra.local.apigw.gateway import HttpApiGateway
from infra.local.apigw.payload import HttpRequest


class _RequestHandler(BaseHTTPRequestHandler):
    # Headers and body go out in two writes; without this a keep-alive client waits ~40 ms for the
    # delayed ACK before the body arrives.
    disable_nagle_algorithm = True
    server: HttpApiServer
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
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
        host = self.headers.get("host") or self.server.url.removeprefix("http://")
        response = self.server.gateway.handle(request, domain_name=host)
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
    """``sam local start-api`` for HTTP APIs; ``port=0`` picks a free port (see ``server_address``)."""

    daemon_threads = True

    def __init__(
        self,
        gateway: HttpApiGateway,
        host: str = "127.0.0.1",
        port: int = 3000,
        *,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        self.gateway = gateway
        self.access_log = access_log
        super().__init__((host, port), _RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host if isinstance(host, str) else host.decode()}:{port}"
