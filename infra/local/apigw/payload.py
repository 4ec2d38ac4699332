"""Payload format 2.0 both ways: the event a request becomes, and a handler's answer as an HTTP response."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from infra.local.template import ACCOUNT_ID, LOCAL_API_ID, Route

TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript", "+json", "+xml")


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
