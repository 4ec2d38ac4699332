"""The observability module's own behaviour: request correlation for the HTTP API, and tracing only
when it is on, with the response kept out of the trace."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder

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


class _KeptSegments:
    """An X-Ray emitter that keeps what it would have sent to the daemon."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_entity(self, entity: Any) -> None:
        self.sent.append(entity.to_dict())

    def set_daemon_address(self, address: str | None) -> None:
        pass


@pytest.fixture
def xray_segments(monkeypatch: pytest.MonkeyPatch) -> Iterator[_KeptSegments]:
    """Tracing on, as in Lambda with ``Tracing: Active``, with segments kept in memory."""
    kept = _KeptSegments()
    emitter, sampling = xray_recorder.emitter, xray_recorder.sampling
    xray_recorder.configure(emitter=kept, sampling=False)  # every segment, and no daemon to ask for rules
    global_sdk_config.set_sdk_enabled(True)
    monkeypatch.setattr(tracer, "disabled", False)
    try:
        yield kept
    finally:
        global_sdk_config.set_sdk_enabled(False)
        xray_recorder.configure(emitter=emitter, sampling=sampling)


def test_a_traced_handler_keeps_its_response_out_of_the_trace(xray_segments: _KeptSegments) -> None:
    def handler(event: Any, context: Any) -> dict[str, str]:
        return {"body": "a user's recommendations"}

    for traced in (trace_lambda_handler(handler), tracer.capture_lambda_handler(handler)):
        xray_recorder.begin_segment("request")
        assert traced({}, None) == {"body": "a user's recommendations"}
        xray_recorder.end_segment()

    ours, powertools_default = (segment["subsegments"][0] for segment in xray_segments.sent)
    assert ours["name"] == "## handler"
    assert "ColdStart" in ours["annotations"]
    assert "a user's recommendations" not in json.dumps(ours)
    # The check can fail: Powertools' default puts the response in the trace.
    assert "a user's recommendations" in json.dumps(powertools_default)
