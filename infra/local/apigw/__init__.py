"""API Gateway HTTP API, emulated for ``start-api``: route matching (``routes``), the JWT authorizer
(``tokens``), payload format 2.0 both ways (``payload``), the gateway (``gateway``) and its HTTP server
(``server``).

JWTs are verified as the JWT authorizer verifies them (the local JWKS, the route's issuer and audience,
expiry) and their claims handed to the function exactly where API Gateway puts them
(``requestContext.authorizer.jwt.claims``, every value a string). The names below are the interface.
"""

from infra.local.apigw.gateway import Cors, HttpApiGateway
from infra.local.apigw.payload import (
    HttpRequest,
    HttpResponse,
    gateway_claims,
    gateway_response,
    http_api_event,
)
from infra.local.apigw.routes import RouteMatch, match_route
from infra.local.apigw.server import HttpApiServer
from infra.local.apigw.tokens import AuthError, JwtVerifier, SigningKey, local_jwt, local_signing_key

__all__ = [
    "AuthError",
    "Cors",
    "HttpApiGateway",
    "HttpApiServer",
    "HttpRequest",
    "HttpResponse",
    "JwtVerifier",
    "RouteMatch",
    "SigningKey",
    "gateway_claims",
    "gateway_response",
    "http_api_event",
    "local_jwt",
    "local_signing_key",
    "match_route",
]
