"""boto3 clients. Endpoints come from ``AWS_ENDPOINT_URL`` (moto, LocalStack) or the default chain."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)


_BOUNDED_CONFIG = Config(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=2)


@cache
def client(service: str) -> Any:
    """One client per service per container; boto3 reads AWS_ENDPOINT_URL and the region itself."""
    return boto3.session.Session().client(service, config=_CLIENT_CONFIG)  # type: ignore[call-overload]


def bounded_client(service: str) -> Any:
    """A client that gives up fast (one attempt; 1 s to connect, 2 s per read): for what a function
    reads at init, where an unreachable endpoint must cost seconds, not the init timeout. Not cached:
    build it once per container."""
    return boto3.session.Session().client(service, config=_BOUNDED_CONFIG)  # type: ignore[call-overload]
