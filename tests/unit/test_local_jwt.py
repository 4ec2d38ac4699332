"""The local JWT authorizer: tokens are verified as API Gateway's JWT authorizer verifies them (RSA
signature against the local JWKS, issuer, audience or client_id, exp/nbf/iat), and the template's
issuer and audience are the ones checked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from infra.local.__main__ import main as run_cli
from infra.local.apigw import (
    AuthError,
    HttpApiGateway,
    HttpRequest,
    JwtVerifier,
    SigningKey,
    local_jwt,
    local_signing_key,
)
from infra.local.template import (
    DEFAULT_TEMPLATE,
    LOCAL_USER_POOL_CLIENT_ID,
    LOCAL_USER_POOL_ID,
    REGION,
    Route,
    Stack,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_TEMPLATE = REPO_ROOT / "tests" / "fixtures" / "runner_app" / "template.yaml"
NOW = 1_800_000_000.0
ISSUER, AUDIENCE = "https://issuer.example", "fixture"
LOCAL_COGNITO_ISSUER = f"https://cognito-idp.{REGION}.amazonaws.com/{LOCAL_USER_POOL_ID}"
OTHER_KEY = SigningKey.generate()


def mint(claims: dict[str, Any] | None = None, **options: Any) -> str:
    options = {"issuer": ISSUER, "audience": AUDIENCE, "now": NOW, **options}
    return local_jwt({"sub": "42", **(claims or {})}, **options)


def verifier() -> JwtVerifier:
    return JwtVerifier(ISSUER, (AUDIENCE, "other-client"), local_signing_key().jwks())


def test_a_good_token_verifies_with_or_without_the_bearer_prefix() -> None:
    token = mint({"scope": "a b"})
    assert verifier().claims(f"Bearer {token}", now=NOW)["sub"] == "42"
    assert verifier().claims(token, now=NOW)["scope"] == "a b"  # API Gateway also takes a bare token


def forged_signature() -> str:
    header, payload, _ = mint().split(".")
    return f"{header}.{payload}.c2lnbmF0dXJl"


def tampered_payload() -> str:
    header, _, signature = mint().split(".")
    other_payload = mint({"sub": "admin"}).split(".")[1]
    return f"{header}.{other_payload}.{signature}"


def signed(payload: dict[str, Any], key: SigningKey | None = None, algorithm: str = "RS256") -> str:
    """A token with exactly ``payload``, under the local key's id whatever key signs it."""
    signer = (key or local_signing_key()).private_key
    return jwt.encode(payload, signer, algorithm=algorithm, headers={"kid": local_signing_key().kid})


GOOD_PAYLOAD = {"sub": "42", "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 60}


def hs256_with_the_public_key() -> str:
    # The algorithm-confusion attack: HMAC keyed with the published JWKS (PyJWT refuses to build one).
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": local_signing_key().kid}
    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(GOOD_PAYLOAD).encode())}"
    secret = json.dumps(local_signing_key().jwks()).encode()
    return f"{signing_input}.{part(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def unsigned() -> str:
    return jwt.encode(GOOD_PAYLOAD, "", algorithm="none", headers={"kid": local_signing_key().kid})


BAD_TOKENS: dict[str, Callable[[], str]] = {
    "forged signature": forged_signature,
    "tampered payload": tampered_payload,
    "another key": lambda: mint(key=OTHER_KEY),
    "another key, the local kid": lambda: signed(GOOD_PAYLOAD, key=OTHER_KEY),
    "unknown kid": lambda: jwt.encode(GOOD_PAYLOAD, local_signing_key().private_key, algorithm="RS256"),
    "HS256": hs256_with_the_public_key,
    "alg none": unsigned,
    "wrong issuer": lambda: mint(issuer="https://evil.example"),
    "no issuer": lambda: signed({key: v for key, v in GOOD_PAYLOAD.items() if key != "iss"}),
    "wrong audience": lambda: mint(audience="someone-else"),
    "aud wrong, client_id right": lambda: mint({"client_id": AUDIENCE}, audience="someone-else"),
    "expired": lambda: mint(ttl_s=60, now=NOW - 120),
    "no exp": lambda: signed({key: v for key, v in GOOD_PAYLOAD.items() if key != "exp"}),
    "not yet valid": lambda: mint({"nbf": NOW + 60}),
    "issued in the future": lambda: mint(now=NOW + 60),
    "not a JWT": lambda: "a.b.c",
    "garbage": lambda: "nonsense",
}


@pytest.mark.parametrize("name", sorted(BAD_TOKENS))
def test_tokens_api_gateway_refuses_are_refused(name: str) -> None:
    token = BAD_TOKENS[name]()
    with pytest.raises(AuthError):
        verifier().claims(f"Bearer {token}", now=NOW)


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz"])
def test_missing_or_foreign_authorization_is_refused(authorization: str | None) -> None:
    with pytest.raises(AuthError):
        verifier().claims(authorization, now=NOW)


def test_without_aud_the_client_id_is_the_audience_as_for_cognito_access_tokens() -> None:
    access = {"sub": "42", "iss": ISSUER, "token_use": "access", "exp": NOW + 60}
    good = signed({**access, "client_id": "other-client"})
    assert verifier().claims(good, now=NOW)["client_id"] == "other-client"
    with pytest.raises(AuthError, match="audience"):
        verifier().claims(signed({**access, "client_id": "someone-else"}), now=NOW)
    with pytest.raises(AuthError, match="audience"):
        verifier().claims(signed(access), now=NOW)  # neither aud nor client_id


def test_an_audience_list_matches_when_one_entry_is_configured() -> None:
    assert verifier().claims(mint({"aud": ["x", AUDIENCE]}), now=NOW)["sub"] == "42"


def test_an_authorizer_whose_issuer_cannot_be_resolved_refuses_everything() -> None:
    with pytest.raises(AuthError, match="issuer"):
        JwtVerifier(None, (AUDIENCE,), local_signing_key().jwks()).claims(mint(), now=NOW)


def test_the_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "jwt" / "signing-key.pem"
    first = SigningKey.load(path)
    assert SigningKey.load(path).kid == first.kid
    assert first.jwks()["keys"][0]["kty"] == "RSA"
    assert "d" not in first.jwks()["keys"][0], "the JWKS carries the public half only"


# ---- the template's issuer and audience, through the gateway ---------------------------------------------


def test_template_yaml_resolves_its_cognito_authorizer_to_the_local_pool() -> None:
    issuer, audience = Stack.load(DEFAULT_TEMPLATE).jwt_authorizer()
    assert (issuer, audience) == (LOCAL_COGNITO_ISSUER, (LOCAL_USER_POOL_CLIENT_ID,))
    claims = jwt.decode(local_jwt({"sub": "1"}), options={"verify_signature": False})
    assert (claims["iss"], claims["aud"]) == (LOCAL_COGNITO_ISSUER, LOCAL_USER_POOL_CLIENT_ID)


def test_parameter_overrides_set_the_issuer_and_audience_checked() -> None:
    stack = Stack.load(
        DEFAULT_TEMPLATE,
        parameters={"JwtIssuer": "https://auth.example", "JwtAudience": "web,mobile"},
    )
    assert stack.jwt_authorizer() == ("https://auth.example", ("web", "mobile"))
    protected = [route for route in stack.routes() if route.authorizer is not None]
    assert protected
    assert {(route.issuer, route.audience) for route in protected} == {
        ("https://auth.example", ("web", "mobile"))
    }


def fixture_gateway() -> HttpApiGateway:
    routes = Stack.load(FIXTURE_TEMPLATE).routes()
    return HttpApiGateway(
        routes, lambda function_id, event: {"statusCode": 200, "body": "ok"}, clock=lambda: NOW
    )


@pytest.mark.parametrize(
    ("token", "status"),
    [
        (mint, 200),
        (lambda: mint(key=OTHER_KEY), 401),
        (forged_signature, 401),
        (lambda: mint(issuer=LOCAL_COGNITO_ISSUER), 401),  # template.yaml's issuer, not the fixture's
        (lambda: mint(audience="someone-else"), 401),
        (lambda: mint(ttl_s=60, now=NOW - 120), 401),
    ],
    ids=["good", "wrong-signature", "forged-signature", "wrong-issuer", "wrong-audience", "expired"],
)
def test_the_gateway_checks_the_templates_authorizer(token: Any, status: int) -> None:
    headers = [("authorization", f"Bearer {token()}")]
    response = fixture_gateway().handle(HttpRequest("GET", "/items/7", headers=headers))
    assert response.status == status
    if status == 401:
        assert json.loads(response.body) == {"message": "Unauthorized"}
        assert ("www-authenticate", "Bearer") in response.headers


def test_a_route_without_a_resolvable_issuer_answers_401() -> None:
    route = Route("GET", "/x", "F", "Jwt", issuer=None)
    gateway = HttpApiGateway([route], lambda function_id, event: {}, clock=lambda: NOW)
    response = gateway.handle(HttpRequest("GET", "/x", headers=[("authorization", mint())]))
    assert response.status == 401


def test_the_token_command_mints_for_the_templates_authorizer(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run_cli(["token", "--sub", "7", "--claims", '{"scope": "movies.read"}', "-t", str(FIXTURE_TEMPLATE)])
        == 0
    )
    claims = verifier().claims(capsys.readouterr().out.strip())
    assert (claims["sub"], claims["iss"], claims["aud"], claims["scope"]) == (
        "7",
        ISSUER,
        AUDIENCE,
        "movies.read",
    )
    assert run_cli(["token", "--claims", "[1]", "-t", str(FIXTURE_TEMPLATE)]) == 2
