"""The observability module's own behaviour: request correlation for the HTTP API, and tracing only
when it is on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from movierec.observability import correlate_http_request, logger, trace_lambda_handler, tracer

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


def test_a_handler_is_traced_only_when_tracing_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(event: Any, context: Any) -> str:
        return "answered"

    monkeypatch.setattr(tracer, "disabled", True)
    assert trace_lambda_handler(handler) is handler  # no per-invocation X-Ray work when tracing is off

    monkeypatch.setattr(tracer, "disabled", False)
    traced = trace_lambda_handler(handler)
    assert traced is not handler
    assert traced.__wrapped__ is handler  # type: ignore[attr-defined]
