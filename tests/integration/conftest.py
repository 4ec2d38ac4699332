"""Fixtures shared by the ingest integration tests: an ingest service over real servers, and its logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from movierec.observability import logger
from tests.integration.ingest_harness import Harness, LogLines, build_harness


@pytest.fixture
def harness(mongo_uri: str, mongo_database_name: str, redis_url: str, aws_reset: str) -> Harness:
    return build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    """The Powertools logger's JSON lines so far, with DEBUG on (as in an invocation sampled for debug)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    underlying = logging.getLogger(logger.name)  # the standard logger Powertools writes through
    level = underlying.level
    underlying.addHandler(handler)
    underlying.setLevel(logging.DEBUG)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        underlying.removeHandler(handler)
        underlying.setLevel(level)
