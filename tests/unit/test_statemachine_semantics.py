"""The local state-machine interpreter's semantics (infra/local/statemachine/): paths, choice rules,
catchers, intrinsic functions, what is not emulated, and the service calls through boto3."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.errors import UsageError
from infra.local.statemachine import (
    Boto3Calls,
    ExecutionResult,
    LocalExecution,
    StatesError,
    apply_template,
    choice_matches,
    load_definition,
    substitute,
    validate,
    write_result,
)
from infra.local.template import Stack
from tests.unit.statemachine_support import Recorder


@pytest.fixture(scope="module")
def definition(stack: Stack) -> dict[str, Any]:
    return load_definition(stack.state_machine())


def run(definition: dict[str, Any], data: Any = None, **kwargs: Any) -> ExecutionResult:
    return LocalExecution(definition, name="t", **kwargs).run(data)


def test_pass_parameters_result_path_input_and_output_paths() -> None:
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Pass",
                "InputPath": "$.in",
                "Parameters": {"doubled.$": "States.Array($.v, $.v)", "name.$": "$$.Execution.Name", "k": 1},
                "ResultPath": "$.out.a",
                "Next": "B",
            },
            "B": {
                "Type": "Pass",
                "Result": {"x": True},
                "ResultPath": "$.b",
                "OutputPath": "$.out",
                "End": True,
            },
        },
    }
    result = run(definition, {"in": {"v": 5}, "keep": 1})
    assert result.status == "SUCCEEDED"
    assert result.output == {"a": {"doubled": [5, 5], "name": "t", "k": 1}}


def test_result_path_null_keeps_the_input_and_dollar_replaces_it() -> None:
    assert write_result({"a": 1}, None, {"b": 2}) == {"a": 1}
    assert write_result({"a": 1}, "$", {"b": 2}) == {"b": 2}
    assert write_result({"a": 1}, "$.x.y", 3) == {"a": 1, "x": {"y": 3}}
    with pytest.raises(StatesError, match="ResultPathMatchFailure"):
        write_result([1], "$.x", 3)


@pytest.mark.parametrize(
    ("rule", "matches"),
    [
        ({"Variable": "$.n", "NumericEquals": 3}, True),
        ({"Variable": "$.n", "NumericGreaterThan": 3}, False),
        ({"Variable": "$.n", "StringEquals": "3"}, False),  # another type never matches
        ({"Variable": "$.s", "StringMatches": "{*"}, True),
        ({"Variable": "$.s", "StringMatches": "\\{*"}, True),
        ({"Variable": "$.s", "StringMatches": "x*"}, False),
        ({"Variable": "$.missing", "IsPresent": False}, True),
        ({"Variable": "$.list[1]", "IsNumeric": True}, True),
        ({"Variable": "$.list[5]", "IsPresent": True}, False),
        ({"Variable": "$.flag", "BooleanEquals": True}, True),
        ({"Variable": "$.n", "NumericLessThanEqualsPath": "$.list[1]"}, True),
        ({"Variable": "$.when", "TimestampLessThan": "2031-01-01T00:00:00Z"}, True),
        (
            {"And": [{"Variable": "$.n", "IsNumeric": True}, {"Not": {"Variable": "$.s", "IsNull": True}}]},
            True,
        ),
        (
            {"Or": [{"Variable": "$.flag", "BooleanEquals": False}, {"Variable": "$.n", "NumericEquals": 4}]},
            False,
        ),
    ],
)
def test_choice_rules(rule: dict[str, Any], matches: bool) -> None:
    data = {"n": 3, "s": '{"a": 1}', "list": [0, 7], "flag": True, "when": "2030-05-01T00:00:00Z"}
    assert choice_matches(rule, data, {}) is matches


def test_a_missing_path_is_a_runtime_error_that_no_catcher_catches() -> None:
    definition: dict[str, Any] = {
        "StartAt": "C",
        "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.nope", "NumericEquals": 1, "Next": "E"}]},
            "E": {"Type": "Succeed"},
        },
    }
    result = run(definition, {})
    assert (result.status, result.error) == ("FAILED", "States.Runtime")
    no_match = {"StartAt": "C", "States": {"C": {**definition["States"]["C"], "Choices": []}, "E": {}}}
    with pytest.raises(UsageError, match="needs Choices"):
        validate(no_match)


def test_states_all_catches_task_errors_but_task_failed_does_not_match_timeouts() -> None:
    def timing_out(parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        raise StatesError("States.Timeout", "slow")

    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {"Overrides": {}},
        "Retry": [{"ErrorEquals": ["States.TaskFailed"], "MaxAttempts": 5}],
        "Catch": [
            {"ErrorEquals": ["States.TaskFailed"], "Next": "Wrong"},
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Caught"},
        ],
        "End": True,
    }
    definition = {
        "StartAt": "T",
        "States": {"T": task, "Wrong": {"Type": "Fail"}, "Caught": {"Type": "Succeed"}},
    }
    recorder = Recorder()
    result = run(definition, {"a": 1}, run_task=timing_out, sleep=recorder.sleep)
    assert result.path == ["T", "Caught"]
    assert result.output == {"a": 1, "err": {"Error": "States.Timeout", "Cause": "slow"}}
    assert recorder.sleeps == []


def test_intrinsic_functions_nest_and_escape() -> None:
    data = {"doc": '{"k": [1, 2]}', "v": {"a": "b"}}
    template = {
        "parsed.$": "States.StringToJson($.doc)",
        "text.$": "States.Format('it\\'s {} and \\{{}\\} \\{\\}', States.JsonToString($.v), 42)",
        "length.$": "States.ArrayLength(States.Array(1, 'two', null))",
        "sum.$": "States.MathAdd(40, 2)",
    }
    assert apply_template(template, data, {}) == {
        "parsed": {"k": [1, 2]},
        "text": 'it\'s {"a":"b"} and {42} {}',
        "length": 3,
        "sum": 42,
    }
    with pytest.raises(StatesError, match="IntrinsicFailure"):
        apply_template({"x.$": "States.StringToJson('not json')"}, {}, {})


def test_wait_and_fail_states() -> None:
    definition = {
        "StartAt": "W",
        "States": {
            "W": {"Type": "Wait", "SecondsPath": "$.s", "Next": "F"},
            "F": {"Type": "Fail", "ErrorPath": "$.e", "Cause": "because"},
        },
    }
    recorder = Recorder()
    result = run(definition, {"s": 30, "e": "Custom.Error"}, sleep=recorder.sleep, max_retry_delay_s=0.5)
    assert (result.status, result.error, result.cause) == ("FAILED", "Custom.Error", "because")
    assert recorder.sleeps == [0.5]


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"Type": "Parallel", "Branches": [], "End": True}, "not emulated locally"),
        ({"Type": "Map", "End": True}, "not emulated locally"),
        ({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True}, "not emulated"),
        (
            {"Type": "Task", "Resource": "arn:aws:states:::ecs:runTask.waitForTaskToken", "End": True},
            "emulated",
        ),
        ({"Type": "Pass", "Next": "Nowhere"}, "not a state"),
        ({"Type": "Pass"}, "neither Next nor End"),
        ({"Type": "Pass", "Parameters": {"x.$": "States.Hash('a', 'SHA-1')"}, "End": True}, "Hash"),
        ({"Type": "Pass", "Parameters": {"x.$": "$..deep"}, "End": True}, "reference paths"),
        ({"Type": "Pass", "QueryLanguage": "JSONata", "End": True}, "JSONata"),
    ],
)
def test_what_is_not_emulated_is_refused_before_running(state: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate({"StartAt": "S", "States": {"S": state}})


def test_substitutions_mark_values_only_aws_knows() -> None:
    text = '{"a": "${Known}", "b": ["${Subnets}"], "c": "${Other}"}'
    assert json.loads(substitute(text, {"Known": "k", "Subnets": None})) == {
        "a": "k",
        "b": ["<Subnets: only in AWS>"],
        "c": "${Other}",
    }


def test_execution_names_are_checked_and_defaulted(definition: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="execution name"):
        LocalExecution(definition, name="has space")
    assert re.match(r"^local-\d{8}T\d{6}Z-[0-9a-f]{6}$", LocalExecution(definition).name)


def _client(service: str) -> Any:
    return boto3.session.Session(region_name="us-east-1").client(service)  # type: ignore[call-overload]


def test_service_calls_go_through_boto3_and_name_errors_as_step_functions_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        calls = Boto3Calls(_client)
        topic = boto3.client("sns", region_name="us-east-1").create_topic(Name="t")["TopicArn"]
        assert set(calls("sns", "publish", {"TopicArn": topic, "Message": "hello"})) == {"MessageId"}
        datum = {"MetricName": "GateRejected", "Value": 1, "Unit": "Count"}
        assert calls("cloudwatch", "putMetricData", {"Namespace": "MovieRec", "MetricData": [datum]}) == {}
        with pytest.raises(StatesError) as raised:
            calls("sns", "publish", {"TopicArn": topic + "-missing", "Message": "hello"})
        assert raised.value.error.startswith("SNS.")
        with pytest.raises(StatesError, match="no action"):
            calls("sns", "launchRockets", {})
