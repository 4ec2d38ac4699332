"""JWTs as API Gateway's JWT authorizer checks them, and the local cloud's signing key.

The local cloud has one RSA key pair per checkout (``.local/jwt/signing-key.pem``, made on first use):
its private half signs the tokens :func:`local_jwt` mints, its public half is the JWKS the local API
trusts in place of ``{issuer}/.well-known/jwks.json``. Verification follows the authorizer: an RSA
algorithm and a ``kid`` the JWKS holds, the signature, ``iss`` equal to the configured issuer, ``aud``
(or, without ``aud``, ``client_id``) among the configured audiences, and ``exp``/``nbf``/``iat``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from infra.local.template import DEFAULT_TEMPLATE, REPO_ROOT, Stack

KEY_PATH = REPO_ROOT / ".local" / "jwt" / "signing-key.pem"
SIGNING_ALGORITHM = "RS256"
# API Gateway accepts RSA-based algorithms only; HS256 and "none" tokens are refused before any key.
ACCEPTED_ALGORITHMS = ("RS256", "RS384", "RS512")


class AuthError(Exception):
    """The request carries no token API Gateway would accept (it answers 401)."""


@dataclass(frozen=True)
class SigningKey:
    """An RSA key pair with its key id (the RFC 7638 thumbprint, so every process derives the same)."""

    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @classmethod
    def load(cls, path: Path = KEY_PATH) -> SigningKey:
        """The key at ``path``, created there first if missing (safely when processes race)."""
        if not path.is_file():
            _create_key_file(path)
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} does not hold an RSA private key")
        return cls(key)

    @functools.cached_property
    def public_jwk(self) -> dict[str, str]:
        jwk: dict[str, str] = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        canonical = json.dumps({name: jwk[name] for name in ("e", "kty", "n")}, separators=(",", ":"))
        kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        return {**jwk, "kid": kid, "use": "sig", "alg": SIGNING_ALGORITHM}

    @property
    def kid(self) -> str:
        return self.public_jwk["kid"]

    def jwks(self) -> dict[str, Any]:
        """The public half as a JWKS document, what an issuer serves at /.well-known/jwks.json."""
        return {"keys": [self.public_jwk]}


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = SigningKey.generate().private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".signing-key-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(pem)
        # link() fails when another process created the key first; theirs is then the key.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


@functools.cache
def local_signing_key() -> SigningKey:
    return SigningKey.load()


@functools.cache
def _default_authorizer() -> tuple[str, tuple[str, ...]]:
    return Stack.load(DEFAULT_TEMPLATE).jwt_authorizer()


def local_jwt(
    claims: Mapping[str, Any],
    *,
    ttl_s: int = 3600,
    now: float | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    key: SigningKey | None = None,
) -> str:
    """A token the local API accepts: signed with the local key, for the template's issuer and audience.

    ``issuer``/``audience`` default to template.yaml's authorizer for the default local stack; pass the
    ones of another template or parameter overrides (``Stack.jwt_authorizer()``). ``claims`` win over
    the defaults, so a test can mint a token with a wrong ``iss`` or ``aud``.
    """
    if issuer is None or audience is None:
        default_issuer, default_audiences = _default_authorizer()
        issuer = default_issuer if issuer is None else issuer
        audience = (default_audiences[0] if default_audiences else "") if audience is None else audience
    signer = key or local_signing_key()
    issued = int(time.time() if now is None else now)
    payload = {"iss": issuer, "aud": audience, "iat": issued, "exp": issued + ttl_s, **claims}
    return jwt.encode(payload, signer.private_key, algorithm=SIGNING_ALGORITHM, headers={"kid": signer.kid})


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <JWT>``; API Gateway takes a bare token too."""
    if not authorization or not authorization.strip():
        raise AuthError("no Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else authorization.strip()


@dataclass(frozen=True)
class JwtVerifier:
    """One JWT authorizer: the issuer and audiences the template configures, and the keys it trusts."""

    issuer: str | None
    audience: Sequence[str]
    jwks: Mapping[str, Any]

    def claims(self, authorization: str | None, *, now: float | None = None) -> dict[str, Any]:
        """The verified claims of the request's bearer token; AuthError for anything API Gateway refuses."""
        if not self.issuer:
            raise AuthError("the authorizer's issuer cannot be resolved locally")
        token = bearer_token(authorization)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise AuthError(f"undecodable JWT: {error}") from error
        if header.get("alg") not in ACCEPTED_ALGORITHMS:
            raise AuthError(f"algorithm {header.get('alg')!r} is not RSA")
        key = next((k for k in self.jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
        public_key = RSAAlgorithm.from_jwk(key) if key is not None else None
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise AuthError(f"no RSA public key {header.get('kid')!r} in the JWKS")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                public_key,
                algorithms=list(ACCEPTED_ALGORITHMS),
                issuer=self.issuer,
                # Times are checked below against the gateway's clock, the audience as API Gateway does.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.InvalidTokenError as error:
            raise AuthError(f"invalid JWT: {error}") from error
        self._check_audience(claims)
        _check_times(claims, time.time() if now is None else now)
        return claims

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        # API Gateway compares client_id only when the token has no aud (Cognito access tokens).
        given = claims["aud"] if "aud" in claims else claims.get("client_id")
        values = given if isinstance(given, list) else [given]
        if not any(isinstance(value, str) and value in self.audience for value in values):
            raise AuthError(f"audience {given!r} is not one of {list(self.audience)}")


def _check_times(claims: Mapping[str, Any], now: float) -> None:
    def number(name: str) -> float | None:
        value = claims.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AuthError(f"{name} is not a number")
        return float(value)

    expiry, not_before, issued = number("exp"), number("nbf"), number("iat")
    if expiry is None or expiry <= now:
        raise AuthError("token expired" if expiry is not None else "token has no exp")
    if not_before is not None and not_before > now:
        raise AuthError("token not yet valid")
    if issued is not None and issued > now:
        raise AuthError("token issued in the future")
