"""Secrets resolved through Powertools Parameters (cached across invocations, refreshed on rotation)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

SECRET_MAX_AGE_SECONDS = 300
"""Rotation reaches running containers within this time."""


def read_secret(secret_arn: str, *, fresh: bool = False) -> str:
    """``fresh`` skips the cache: after a SnapStart restore the cached value may predate a rotation."""
    value = parameters.get_secret(secret_arn, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=fresh)
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret {secret_arn} is empty or not a string")
    return value
