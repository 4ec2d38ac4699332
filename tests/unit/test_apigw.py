"""The HTTP API emulation: route matching, payload format 2.0 both ways, the authorizer's 401/403,
CORS and errors (the JWT checks themselves are in test_local_jwt.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from infra.local.apigw import (
    Cors,
    HttpApiGateway,
    HttpRequest,
    gateway_claims,
    gateway_response,
    local_jwt,
    match_route,
)
from infra.local.template import Route

NOW = 1_800_000_000.0
ISSUER, AUDIENCE = "https://issuer.example", "fixture"  # the fixture app's JwtConfiguration


def mint(claims: dict[str, Any], **options: Any) -> str:
    return local_jwt(claims, issuer=ISSUER, audience=AUDIENCE, **options)


# ---- routes and tokens --------------------------------------------------------------------------------

ROUTES = [
    Route("GET", "/items/{item_id}", "F", "Jwt", issuer=ISSUER, audience=(AUDIENCE,)),
    Route("GET", "/items/latest", "F", None),
    Route("ANY", "/files/{proxy+}", "F", None),
    Route("GET", "/files/special", "G", None),
]


@pytest.mark.parametrize(
    ("method", "path", "function_path", "parameters"),
    [
        ("GET", "/items/7", "/items/{item_id}", {"item_id": "7"}),
        ("GET", "/items/latest", "/items/latest", {}),
        ("DELETE", "/files/a/b/c.txt", "/files/{proxy+}", {"proxy": "a/b/c.txt"}),
        ("GET", "/files/special", "/files/special", {}),
    ],
)
def test_routes_match_most_specific_first(
    method: str, path: str, function_path: str, parameters: dict[str, str]
) -> None:
    matched = match_route(ROUTES, method, path)
    assert matched is not None
    assert matched.route.path == function_path
    assert matched.path_parameters == parameters


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/items/7"), ("GET", "/items"), ("GET", "/files"), ("GET", "/")]
)
def test_unmatched_method_or_path_matches_nothing(method: str, path: str) -> None:
    assert match_route(ROUTES, method, path) is None


def test_a_default_route_catches_everything_else() -> None:
    default = Route("ANY", "$default", "F", None)
    matched = match_route([*ROUTES, default], "PUT", "/nowhere")
    assert matched is not None
    assert matched.route.route_key == "$default"


def test_claims_reach_the_function_as_api_gateway_strings() -> None:
    claims = gateway_claims({"sub": "42", "exp": 17, "admin": True, "groups": ["a", "b"], "obj": {"k": 1}})
    assert claims == {"sub": "42", "exp": "17", "admin": "true", "groups": "[a b]", "obj": '{"k":1}'}


# ---- the gateway --------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.result = result if result is not None else {"statusCode": 200, "body": "ok"}
        self.error = error

    def __call__(self, function_id: str, event: dict[str, Any]) -> Any:
        self.events.append((function_id, event))
        if self.error is not None:
            raise self.error
        return self.result


def gateway(recorder: Recorder, **kwargs: Any) -> HttpApiGateway:
    return HttpApiGateway(ROUTES, recorder, clock=lambda: NOW, **kwargs)


def test_request_becomes_a_payload_v2_event() -> None:
    recorder = Recorder()
    token = mint({"sub": "42", "roles": ["x", "y"]}, now=NOW)
    request = HttpRequest(
        "GET",
        "/items/7",
        "k=5&tag=a&tag=b&empty=",
        [
            ("Authorization", f"Bearer {token}"),
            ("X-Multi", "1"),
            ("x-multi", "2"),
            ("Cookie", "a=1; b=2"),
            ("User-Agent", "pytest"),
        ],
        source_ip="10.0.0.9",
    )
    response = gateway(recorder).handle(request, domain_name="localhost:3000")
    assert response.status == 200
    ((function_id, event),) = recorder.events
    assert function_id == "F"
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{item_id}"
    assert event["rawPath"] == "/items/7"
    assert event["rawQueryString"] == "k=5&tag=a&tag=b&empty="
    assert event["queryStringParameters"] == {"k": "5", "tag": "a,b", "empty": ""}
    assert event["pathParameters"] == {"item_id": "7"}
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-multi"] == "1,2"
    assert "cookie" not in event["headers"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/items/7",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.9",
        "userAgent": "pytest",
    }
    assert context["routeKey"] == event["routeKey"]
    assert context["stage"] == "$default"
    assert context["timeEpoch"] == int(NOW * 1000)
    assert context["domainName"] == "localhost:3000"
    assert context["requestId"]
    assert context["authorizer"]["jwt"]["claims"]["sub"] == "42"
    assert context["authorizer"]["jwt"]["claims"]["roles"] == "[x y]"
    assert context["authorizer"]["jwt"]["scopes"] is None


def test_public_routes_get_no_authorizer_context_and_bodies_keep_their_encoding() -> None:
    recorder = Recorder()
    gw = gateway(recorder)
    gw.handle(
        HttpRequest("POST", "/files/a.json", headers=[("content-type", "application/json")], body=b'{"a":1}')
    )
    gw.handle(HttpRequest("PUT", "/files/b.bin", headers=[("content-type", "image/png")], body=b"\x89PNG"))
    text_event, binary_event = (event for _, event in recorder.events)
    assert "authorizer" not in text_event["requestContext"]
    assert (text_event["body"], text_event["isBase64Encoded"]) == ('{"a":1}', False)
    assert binary_event["isBase64Encoded"] is True
    assert base64.b64decode(binary_event["body"]) == b"\x89PNG"
    assert "queryStringParameters" not in text_event
    assert "pathParameters" in text_event


@pytest.mark.parametrize(
    "headers", [[], [("authorization", "Bearer nonsense")], [("authorization", "Bearer a.b.c")]]
)
def test_protected_route_without_a_usable_token_is_401(headers: list[tuple[str, str]]) -> None:
    recorder = Recorder()
    response = gateway(recorder).handle(HttpRequest("GET", "/items/7", headers=headers))
    assert response.status == 401
    assert json.loads(response.body) == {"message": "Unauthorized"}
    assert recorder.events == []


def test_unknown_route_is_404_not_found() -> None:
    recorder = Recorder()
    response = gateway(recorder).handle(HttpRequest("GET", "/nope"))
    assert (response.status, json.loads(response.body)) == (404, {"message": "Not Found"})
    assert recorder.events == []


def test_route_scopes_are_enforced_with_403() -> None:
    routes = [
        Route("GET", "/scoped", "F", "Jwt", scopes=("movies.read",), issuer=ISSUER, audience=(AUDIENCE,))
    ]
    recorder = Recorder()
    gw = HttpApiGateway(routes, recorder, clock=lambda: NOW)
    without = mint({"sub": "1", "scope": "other"}, now=NOW)
    with_scope = mint({"sub": "1", "scope": "other movies.read"}, now=NOW)
    assert (
        gw.handle(HttpRequest("GET", "/scoped", headers=[("authorization", f"Bearer {without}")])).status
        == 403
    )
    assert (
        gw.handle(HttpRequest("GET", "/scoped", headers=[("authorization", f"Bearer {with_scope}")])).status
        == 200
    )
    assert recorder.events[0][1]["requestContext"]["authorizer"]["jwt"]["scopes"] == ["movies.read"]


def test_unsupported_authorizer_types_refuse_rather_than_allow() -> None:
    routes = [Route("GET", "/iam", "F", "AWS_IAM", authorizer_type="AWS_IAM")]
    token = mint({"sub": "1"}, now=NOW)
    response = HttpApiGateway(routes, Recorder(), clock=lambda: NOW).handle(
        HttpRequest("GET", "/iam", headers=[("authorization", f"Bearer {token}")])
    )
    assert response.status == 401


def test_handler_errors_become_500_internal_server_error() -> None:
    errors: list[str] = []
    gw = gateway(Recorder(error=RuntimeError("boom")), on_error=lambda f, e: errors.append(f"{f}: {e}"))
    response = gw.handle(HttpRequest("GET", "/items/latest"))
    assert (response.status, json.loads(response.body)) == (500, {"message": "Internal Server Error"})
    assert errors == ["F: boom"]


def test_responses_translate_status_headers_cookies_and_base64() -> None:
    response = gateway_response(
        {
            "statusCode": 201,
            "headers": {"x-a": "1"},
            "cookies": ["c=1; Path=/"],
            "body": base64.b64encode(b"\x00\x01").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.status == 201
    assert ("x-a", "1") in response.headers
    assert ("set-cookie", "c=1; Path=/") in response.headers
    assert response.body == b"\x00\x01"
    plain = gateway_response({"hello": "world"})
    assert (plain.status, json.loads(plain.body)) == (200, {"hello": "world"})
    assert ("content-type", "application/json") in plain.headers
    assert gateway_response({"statusCode": 204}).body == b""


def test_cors_preflight_and_allowed_origins() -> None:
    cors = Cors(
        allow_origins=("https://app.example",), allow_headers=("authorization",), allow_methods=("GET",)
    )
    gw = gateway(Recorder(), cors=cors)
    preflight = gw.handle(
        HttpRequest(
            "OPTIONS",
            "/items/7",
            headers=[("origin", "https://app.example"), ("access-control-request-method", "GET")],
        )
    )
    assert preflight.status == 204
    assert ("access-control-allow-origin", "https://app.example") in preflight.headers
    other = gw.handle(HttpRequest("GET", "/items/latest", headers=[("origin", "https://evil.example")]))
    assert all(name != "access-control-allow-origin" for name, _ in other.headers)
