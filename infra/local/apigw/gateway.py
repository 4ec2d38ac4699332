"""The HTTP API itself: match a route, run its JWT authorizer, invoke the function, translate the answer."""

from __future__ import annotations

import binascii
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from infra.local.apigw.payload import HttpRequest, HttpResponse, gateway_response, http_api_event
from infra.local.apigw.routes import match_route
from infra.local.apigw.tokens import AuthError, JwtVerifier, local_signing_key
from infra.local.template import Route

NOT_FOUND = {"message": "Not Found"}
UNAUTHORIZED = {"message": "Unauthorized"}
FORBIDDEN = {"message": "Forbidden"}
INTERNAL_ERROR = {"message": "Internal Server Error"}


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    scope = claims.get("scope", claims.get("scp", ""))
    return set(scope.split()) if isinstance(scope, str) else {str(s) for s in scope or []}


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

    def route_path(self, request: HttpRequest) -> str:
        """The path of the template's route that serves ``request`` (``/v1/movies/{movie_id}/similar``)."""
        matched = match_route(self.routes, request.method, request.raw_path)
        return matched.route.path if matched is not None else "unmatched"

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
