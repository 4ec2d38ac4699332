"""The observability module's own behaviour: request correlation for the HTTP API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from movierec.observability import correlate_http_request, logger

SAMPLE_EVENTS = Path(__file__).resolve().parents[2] / "events"


def test_each_request_is_correlated_by_its_own_api_gateway_request_id() -> None:
    seen: list[str | None] = []

    @correlate_http_request
    def handler(event: Any, context: Any) -> str:
        seen.append(logger.get_correlation_id())
        return "answered"

    sample = json.loads((SAMPLE_EVENTS / "http-recommendations.json").read_text())
    assert handler(sample, None) == "answered"
    handler({"requestContext": {"requestId": "second"}}, None)
    handler({"requestContext": "not an object"}, None)  # a stray id must not leak into this request
    handler({}, None)

    assert seen == [sample["requestContext"]["requestId"], "second", None, None]
