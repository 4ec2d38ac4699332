"""API Gateway HTTP API, emulated: route matching, the JWT authorizer, payload format 2.0 both ways.

JWTs are verified as the JWT authorizer verifies them (``infra.local.tokens``: the local JWKS, the
route's issuer and audience, expiry) and their claims handed to the function exactly where API Gateway
puts them (``requestContext.authorizer.jwt.claims``, every value a string).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra.local.template import ACCOUNT_ID, LOCAL_API_ID, Route
from infra.local.tokens import AuthError, JwtVerifier, local_jwt, local_signing_key

__all__ = ["AuthError", "local_jwt"]  # re-exported: callers mint tokens from here

NOT_FOUND = {"message": "Not Found"}
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
INTERNAL_ERROR = {"message": "Internal Server Error"}
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "+json", "+xml")


# ---- tokens ---------------------------------------------------------------------------------------------


def gateway_claims(claims: Mapping[str, Any]) -> dict[str, str]:
    """Claims as API Gateway passes them: strings, arrays as ``[a b]``, objects as JSON."""

    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list):
            return "[" + " ".join(text(item) for item in value) + "]"
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
        return str(value)

    return {str(name): text(value) for name, value in claims.items()}


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    return set(scope.split()) if isinstance(scope, str) else {str(s) for s in scope or []}


# ---- routes ---------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"^\{([A-Za-z0-9_.-]+)(\+?)\}$")


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


def _match_path(template: str, path: str) -> dict[str, str] | None:
    wanted = template.strip("/").split("/") if template.strip("/") else []
    given = path.strip("/").split("/") if path.strip("/") else []
    parameters: dict[str, str] = {}
    for index, segment in enumerate(wanted):
        variable = _VARIABLE.match(segment)
        if variable and variable.group(2):  # {proxy+}: the rest of the path, at least one segment
            rest = given[index:]
            if not rest:
                return None
            parameters[variable.group(1)] = "/".join(rest)
            return parameters
        if index >= len(given):
            return None
        if variable:
            if not given[index]:
                return None
            parameters[variable.group(1)] = given[index]
        elif segment != given[index]:
            return None
    return parameters if len(given) == len(wanted) else None


def _specificity(route: Route) -> tuple[int, int, int, int]:
    segments = route.path.strip("/").split("/")
    greedy = any(s.endswith("+}") for s in segments)
    variables = sum(1 for s in segments if _VARIABLE.match(s))
    # API Gateway prefers exact paths, then fewer variables, then longer paths, then a named method.
    return (int(greedy), variables, -len(segments), int(route.method == "ANY"))


def match_route(routes: Sequence[Route], method: str, path: str) -> RouteMatch | None:
    candidates = []
    for route in routes:
        if route.path == "$default" or route.method not in {method.upper(), "ANY"}:
            continue
        parameters = _match_path(route.path, path)
        if parameters is not None:
            candidates.append((_specificity(route), route, parameters))
    if candidates:
        _, route, parameters = min(candidates, key=lambda item: item[0])
        return RouteMatch(route, parameters)
    fallback = next((route for route in routes if route.path == "$default"), None)
    return RouteMatch(fallback, {}) if fallback else None


# ---- requests and responses --------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str = ""
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    protocol: str = "HTTP/1.1"


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, document: Any, headers: Sequence[tuple[str, str]] = ()) -> HttpResponse:
        return cls(
            status,
            [("content-type", "application/json"), *headers],
            json.dumps(document, separators=(",", ":")).encode(),
        )


def _is_text(content_type: str) -> bool:
    kind = content_type.lower().split(";")[0].strip()
    return not kind or any(kind.startswith(t) or kind.endswith(t) for t in TEXT_TYPES)


def http_api_event(
    request: HttpRequest,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    claims: Mapping[str, Any] | None = None,
    scopes: Sequence[str] | None = None,
    request_id: str | None = None,
    now: datetime | None = None,
    domain_name: str = "localhost",
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway sends a Lambda integration."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        # Repeated headers are joined with commas.
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    moment = now or datetime.now(UTC)
    request_id = request_id or base64.b64encode(uuid.uuid4().bytes[:11]).decode("ascii")
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": LOCAL_API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", maxsplit=1)[0],
        "http": {
            "method": request.method.upper(),
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(moment.timestamp() * 1000),
    }
    if claims is not None:
        jwt = {"claims": gateway_claims(claims), "scopes": list(scopes) if scopes else None}
        context["authorizer"] = {"jwt": jwt}
    event["requestContext"] = context
    if request.body:
        if _is_text(headers.get("content-type", "")):
            try:
                event["body"] = request.body.decode("utf-8")
                event["isBase64Encoded"] = False
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(request.body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    return event


def gateway_response(result: Any) -> HttpResponse:
    """Translate a handler's return value the way API Gateway does for payload format 2.0."""
    if not (isinstance(result, dict) and "statusCode" in result):
        # Anything else is taken as a JSON body with status 200.
        return HttpResponse.json(200, result)
    headers = [(str(k), str(v)) for k, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((str(name), str(value)) for value in values)
    headers.extend(("set-cookie", str(cookie)) for cookie in result.get("cookies") or [])
    body = result.get("body")
    if body is None:
        raw = b""
    elif result.get("isBase64Encoded"):
        raw = base64.b64decode(str(body))
    else:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode("utf-8")
    if not any(name.lower() == "content-type" for name, _ in headers) and raw:
        headers.append(("content-type", "application/json"))
    return HttpResponse(int(result["statusCode"]), headers, raw)


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    allow_methods: tuple[str, ...] = ()
    max_age: int | None = None

    def origin_allowed(self, origin: str) -> bool:
        return "*" in self.allow_origins or origin in self.allow_origins


class HttpApiGateway:
    """Matches a request to a route, authorises it and invokes the function behind it."""

    def __init__(
        self,
        routes: Sequence[Route],
        invoke: Callable[[str, dict[str, Any]], Any],
        *,
        cors: Cors | None = None,
        clock: Callable[[], float] = time.time,
        on_error: Callable[[str, BaseException], None] | None = None,
        jwks: Mapping[str, Any] | None = None,
    ) -> None:
        """``jwks``: the keys JWT authorizers trust, by default the local cloud's signing key."""
        self.routes = list(routes)
        self.invoke = invoke
        self.cors = cors
        self.clock = clock
        self.on_error = on_error
        needs_keys = jwks is None and any(route.authorizer_type == "JWT" for route in self.routes)
        self.jwks: Mapping[str, Any] = local_signing_key().jwks() if needs_keys else (jwks or {"keys": []})
        self._verifiers = {
            route: JwtVerifier(route.issuer, route.audience, self.jwks)
            for route in self.routes
            if route.authorizer_type == "JWT"
        }

    def handle(self, request: HttpRequest, *, domain_name: str = "localhost") -> HttpResponse:
        header = {name.lower(): value for name, value in request.headers}
        origin = header.get("origin")
        preflight = request.method.upper() == "OPTIONS" and "access-control-request-method" in header
        if self.cors and origin and preflight:
            return self._preflight(origin)
        response = self._route(request, header, domain_name)
        if self.cors and origin and self.cors.origin_allowed(origin):
            allowed = "*" if "*" in self.cors.allow_origins else origin
            response.headers.append(("access-control-allow-origin", allowed))
        return response

    def _preflight(self, origin: str) -> HttpResponse:
        assert self.cors is not None
        if not self.cors.origin_allowed(origin):
            return HttpResponse(204)
        headers = [
            ("access-control-allow-origin", "*" if "*" in self.cors.allow_origins else origin),
            ("access-control-allow-methods", ",".join(self.cors.allow_methods) or "*"),
            ("access-control-allow-headers", ",".join(self.cors.allow_headers) or "*"),
        ]
        if self.cors.max_age is not None:
            headers.append(("access-control-max-age", str(self.cors.max_age)))
        return HttpResponse(204, headers)

    def _route(self, request: HttpRequest, header: Mapping[str, str], domain_name: str) -> HttpResponse:
        matched = match_route(self.routes, request.method, request.raw_path)
        if matched is None:
            return HttpResponse.json(404, NOT_FOUND)
        route = matched.route
        claims: dict[str, Any] | None = None
        if route.authorizer is not None:
            if route.authorizer_type != "JWT":
                # Only JWT authorizers are emulated; refuse rather than let requests through.
                return HttpResponse.json(401, UNAUTHORIZED)
            try:
                claims = self._verifiers[route].claims(header.get("authorization"), now=self.clock())
            except AuthError:
                return HttpResponse.json(401, UNAUTHORIZED, [("www-authenticate", "Bearer")])
            if route.scopes and not token_scopes(claims) & set(route.scopes):
                return HttpResponse.json(403, FORBIDDEN)
        event = http_api_event(
            request,
            route,
            matched.path_parameters,
            claims=claims,
            scopes=route.scopes,
            now=datetime.fromtimestamp(self.clock(), UTC),
            domain_name=domain_name,
        )
        try:
            result = self.invoke(route.function_id, event)
        except Exception as error:
            if self.on_error is not None:
                self.on_error(route.function_id, error)
            return HttpResponse.json(500, INTERNAL_ERROR)
        try:
            return gateway_response(result)
        except (TypeError, ValueError, binascii.Error) as error:
            if self.on_error is not None:
                self.on_error(route.function_id, error)
            return HttpResponse.json(500, INTERNAL_ERROR)


# ---- the server ---------------------------------------------------------------------------------------


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
