"""The training pipeline's state machine (infra/statemachine/training.asl.json) as the template deploys it,
and the local interpreter that runs it (infra/local/statemachine/), here with a fake job standing in for
``python -m training_job train``."""

from __future__ import annotations

import json
import random
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local.errors import UsageError
from infra.local.statemachine import (
    Boto3Calls,
    ExecutionResult,
    LocalEcsTask,
    LocalExecution,
    StatesError,
    apply_template,
    choice_matches,
    load_definition,
    substitute,
    validate,
    write_result,
)
from infra.local.template import (
    TRAINING_CONTAINER,
    LocalCloud,
    Stack,
    training_environment,
)
from movierec.observability import METRIC_NAMESPACE, MetricName

REPO_ROOT = Path(__file__).resolve().parents[2]
ASL = REPO_ROOT / "infra" / "statemachine" / "training.asl.json"
STAGES = ["export", "fit", "publish"]
EXIT_GATE_REJECTED = 3  # training_job's contract: the gate kept the published model

FAKE_JOB_SOURCE = '''\
"""Stands in for `python -m training_job train`: records its call, exits as FAKE_JOB_PLAN says."""
import json
import os
import sys
from pathlib import Path

args = sys.argv[1:]
stage = args[args.index("--stage") + 1] if "--stage" in args else "all"
log = Path(os.environ["FAKE_JOB_LOG"])
calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
attempt = sum(1 for call in calls if call["stage"] == stage)
names = ("ARTIFACT_BUCKET", "POWERTOOLS_SERVICE_NAME", "REDIS_URL", "MONGODB_URI", "AWS_ENDPOINT_URL")
record = {"stage": stage, "argv": args, "env": {name: os.environ.get(name) for name in names}}
with log.open("a") as handle:
    handle.write(json.dumps(record) + "\\n")
codes = json.loads(os.environ.get("FAKE_JOB_PLAN", "{}")).get(stage, [0])
sys.exit(codes[min(attempt, len(codes) - 1)])
'''


def write_fake_job(directory: Path) -> tuple[Path, Path]:
    """The fake job script and the file it logs its calls to (one JSON line per call)."""
    script = directory / "fake_job.py"
    script.write_text(FAKE_JOB_SOURCE)
    return script, directory / "calls.jsonl"


def job_calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# ---- the definition as deployed --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def definition(stack: Stack) -> dict[str, Any]:
    return load_definition(stack.state_machine())


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ASL.read_text())
    return loaded


def machine(template: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"]["TrainingPipeline"]["Properties"]
    return properties


def test_the_template_deploys_the_file_with_exactly_the_substitutions_it_uses(
    template: dict[str, Any],
) -> None:
    properties = machine(template)
    assert "Definition" not in properties
    assert (REPO_ROOT / properties["DefinitionUri"]).resolve() == ASL
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL.read_text()))
    assert used == set(properties["DefinitionSubstitutions"])
    assert "Condition" not in template["Resources"]["TrainingPipeline"], "the pipeline exists in every stack"


def test_the_definition_is_valid_and_every_state_is_reachable_and_ends(raw: dict[str, Any]) -> None:
    validate(raw)
    states = raw["States"]
    edges = {
        name: {
            *([state["Next"]] if "Next" in state else []),
            *([state["Default"]] if "Default" in state else []),
            *(rule["Next"] for rule in state.get("Choices", [])),
            *(catcher["Next"] for catcher in state.get("Catch", [])),
        }
        for name, state in states.items()
    }
    reachable, frontier = set(), [raw["StartAt"]]
    while frontier:
        name = frontier.pop()
        if name not in reachable:
            reachable.add(name)
            frontier.extend(edges[name])
    assert reachable == set(states)
    terminal = {name for name, state in states.items() if state["Type"] in {"Succeed", "Fail"}}
    assert {name for name, targets in edges.items() if not targets} == terminal
    assert raw["TimeoutSeconds"] > sum(states[s.capitalize()]["TimeoutSeconds"] for s in STAGES)


def test_each_stage_runs_the_training_task_with_its_command_and_the_execution_name_as_run_id(
    definition: dict[str, Any], stack: Stack
) -> None:
    spec = stack.state_machine()
    context = {"Execution": {"Name": "run-7"}}
    states = definition["States"]
    assert definition["StartAt"] == "Plan"
    latest = apply_template(states["PlanLatest"]["Parameters"], {}, context)
    as_of = apply_template(states["PlanAsOf"]["Parameters"], {"cutoff": "2025-06-01T00:00:00Z"}, context)
    for stage in STAGES:
        state = states[stage.capitalize()]
        assert state["Resource"] == "arn:aws:states:::ecs:runTask.sync"
        parameters = apply_template(state["Parameters"], {"commands": latest}, context)
        assert parameters["TaskDefinition"] == spec.substitutions["TrainingTaskDefinition"]
        assert parameters["Cluster"] == spec.substitutions["TrainingCluster"]
        assert parameters["LaunchType"] == "FARGATE"
        (override,) = parameters["Overrides"]["ContainerOverrides"]
        assert override["Name"] == TRAINING_CONTAINER
        assert override["Command"][:5] == ["train", "--stage", stage, "--run-id", "run-7"]
        network = parameters["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] in {"ENABLED", "DISABLED"}
        assert as_of[stage][: len(latest[stage])] == latest[stage]
    assert latest["fit"][5:] == ["--budget-seconds", "600"]
    # A cutoff in the input reaches the stages that read the events; publish reads the run's export.
    assert as_of["export"][5:] == ["--cutoff", "2025-06-01T00:00:00Z"]
    assert as_of["fit"][7:] == ["--cutoff", "2025-06-01T00:00:00Z"]
    assert as_of["publish"] == latest["publish"]
    assert [states[s.capitalize()].get("Next") for s in STAGES] == ["Fit", "GateOutcome", "Published"]


def test_stages_retry_transient_errors_with_backoff_and_catch_everything(raw: dict[str, Any]) -> None:
    for stage in STAGES:
        state = raw["States"][stage.capitalize()]
        transient = state["Retry"][0]
        assert {"ECS.AmazonECSException", "AmazonECS.Unknown"} <= set(transient["ErrorEquals"])
        assert transient["MaxAttempts"] >= 2
        assert transient["BackoffRate"] > 1
        catchers = state["Catch"]
        assert catchers[-1]["ErrorEquals"] == ["States.ALL"]
        assert catchers[-1]["Next"] == "NotifyFailure"
        assert all(c["ResultPath"] == "$.error" for c in catchers)
    # The gate's exit status surfaces as States.TaskFailed: fit must not retry it.
    fit_retried = {e for r in raw["States"]["Fit"]["Retry"] for e in r["ErrorEquals"]}
    assert not fit_retried & {"States.TaskFailed", "States.ALL"}
    assert raw["States"]["NotifyFailure"]["Next"] == "TrainingFailed"
    assert raw["States"]["TrainingFailed"]["Type"] == "Fail"
    for name in ("NotifyFailure", "NotifyGateRejected", "RecordGateRejected"):
        assert raw["States"][name]["Retry"], f"{name} retries the notification"


def test_notifications_go_to_the_training_topic_and_the_metric_is_a_movierec_metric(
    definition: dict[str, Any], stack: Stack
) -> None:
    topic = stack.state_machine().substitutions["TrainingTopic"]
    assert topic == f"arn:aws:sns:us-east-1:123456789012:{stack.stack_name}-training"
    for name in ("NotifyFailure", "NotifyGateRejected"):
        state = definition["States"][name]
        assert state["Resource"] == "arn:aws:states:::sns:publish"
        assert state["Parameters"]["TopicArn"] == topic
        assert len(state["Parameters"]["Subject"]) <= 100
    record = definition["States"]["RecordGateRejected"]
    assert record["Resource"] == "arn:aws:states:::aws-sdk:cloudwatch:putMetricData"
    assert record["Parameters"]["Namespace"] == METRIC_NAMESPACE
    (datum,) = record["Parameters"]["MetricData"]
    assert datum["MetricName"] == MetricName.GATE_REJECTED


def test_the_state_machine_role_allows_exactly_what_the_definition_does(
    template: dict[str, Any], raw: dict[str, Any]
) -> None:
    (policy,) = machine(template)["Policies"]
    by_sid = {statement["Sid"]: statement for statement in policy["Statement"]}
    assert by_sid["RunTrainingTask"]["Action"] == "ecs:RunTask"
    assert by_sid["RunTrainingTask"]["Resource"] == {"Ref": "TrainingTaskDefinition"}
    assert by_sid["RunTrainingTask"]["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["TrainingCluster", "Arn"]}}
    }
    assert set(by_sid["WatchTrainingTask"]["Action"]) == {"ecs:DescribeTasks", "ecs:StopTask"}
    assert by_sid["PassTaskRoles"]["Resource"] == [
        {"Fn::GetAtt": ["TrainingExecutionRole", "Arn"]},
        {"Fn::GetAtt": ["TrainingTaskRole", "Arn"]},
    ]
    assert by_sid["PassTaskRoles"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }
    assert by_sid["SyncRule"]["Resource"]["Fn::Sub"].endswith(":rule/StepFunctionsGetEventsForECSTaskRule")
    assert by_sid["Notify"] == {
        "Sid": "Notify",
        "Effect": "Allow",
        "Action": "sns:Publish",
        "Resource": {"Ref": "TrainingTopic"},
    }
    namespace = raw["States"]["RecordGateRejected"]["Parameters"]["Namespace"]
    assert by_sid["GateMetric"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": namespace}}
    resources = {state.get("Resource") for state in raw["States"].values()} - {None}
    assert resources == {
        "arn:aws:states:::ecs:runTask.sync",
        "arn:aws:states:::sns:publish",
        "arn:aws:states:::aws-sdk:cloudwatch:putMetricData",
    }, "a new integration needs its permission above"


def test_eventbridge_scheduler_starts_it_on_the_schedule_parameter(template: dict[str, Any]) -> None:
    (event,) = machine(template)["Events"].values()
    assert event["Type"] == "ScheduleV2"
    properties = event["Properties"]
    assert properties["ScheduleExpression"] == {"Ref": "TrainingSchedule"}
    assert properties["State"] == {"Ref": "TrainingScheduleState"}
    assert json.loads(properties["Input"]) == {}
    assert properties["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    parameters = template["Parameters"]
    assert parameters["TrainingSchedule"]["Default"] == "rate(1 day)"
    assert re.match(parameters["TrainingSchedule"]["AllowedPattern"], "cron(0 3 * * ? *)")


def test_without_a_vpc_the_task_gets_a_network_of_its_own(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    substitutions = machine(template)["DefinitionSubstitutions"]
    assert substitutions["AssignPublicIp"] == {"Fn::If": ["UseVpc", "DISABLED", "ENABLED"]}
    assert substitutions["SecurityGroup"] == {
        "Fn::If": ["UseVpc", {"Ref": "FunctionSecurityGroup"}, {"Ref": "TrainingSecurityGroup"}]
    }
    group = resources["TrainingSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in group
    assert {rule["FromPort"] for rule in group["SecurityGroupEgress"]} == {443, 6379, 27017}
    for name in ("TrainingSubnetA", "TrainingSubnetB"):
        assert resources[name]["Condition"] == "CreateTrainingNetwork"
        assert resources[name]["Properties"]["MapPublicIpOnLaunch"] is False
    assert resources["TrainingFlowLog"]["Properties"]["ResourceId"] == {"Ref": "TrainingVpc"}
    assert template["Conditions"]["CreateTrainingNetwork"] == {"Fn::Not": [{"Condition": "UseVpc"}]}


# ---- running it locally ----------------------------------------------------------------------------------


class Recorder:
    """Stands in for the AWS service calls and for time.sleep."""

    def __init__(self, failures: Mapping[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.failures = dict(failures or {})

    def call(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        self.calls.append((service, action, dict(parameters)))
        if self.failures.get(service, 0) > 0:
            self.failures[service] -= 1
            raise StatesError("SNS.InternalErrorException", "the service failed")
        return {"MessageId": f"m{len(self.calls)}"} if service == "sns" else {}

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def published(self) -> list[dict[str, Any]]:
        return [parameters for service, _, parameters in self.calls if service == "sns"]


class Pipeline:
    """The deployed definition, run locally against the fake job."""

    def __init__(self, stack: Stack, tmp_path: Path) -> None:
        self.spec = stack.state_machine()
        self.definition = load_definition(self.spec)
        self.script, self.log = write_fake_job(tmp_path)
        environment, self.command = training_environment(stack, LocalCloud(), environ={})
        self.environment = {**environment, "FAKE_JOB_LOG": str(self.log), "PATH": "/usr/bin:/bin"}
        self.recorder = Recorder()
        self.lines: list[str] = []

    def run(
        self,
        plan: Mapping[str, list[int]] | None = None,
        *,
        name: str = "run-1",
        execution_input: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        task = LocalEcsTask(
            {**self.environment, "FAKE_JOB_PLAN": json.dumps(plan or {})},
            entrypoint=[sys.executable, str(self.script)],
            cwd=self.script.parent,
            default_command=self.command,
            task_definition=self.spec.substitutions["TrainingTaskDefinition"],
            log=self.lines.append,
            output=None,
        )
        return LocalExecution(
            self.definition,
            name=name,
            state_machine_name=self.spec.name,
            run_task=task,
            call_service=self.recorder.call,
            log=self.lines.append,
            sleep=self.recorder.sleep,
            rng=random.Random(7),
        ).run(execution_input or {})

    def stages(self) -> list[str]:
        return [call["stage"] for call in job_calls(self.log)]


@pytest.fixture
def pipeline(stack: Stack, tmp_path: Path) -> Pipeline:
    return Pipeline(stack, tmp_path)


def test_a_passing_run_exports_fits_and_publishes_under_one_run_id(pipeline: Pipeline, stack: Stack) -> None:
    result = pipeline.run(name="nightly-42")
    assert result.status == "SUCCEEDED"
    assert result.path == ["Plan", "PlanLatest", "Export", "Fit", "GateOutcome", "Publish", "Published"]
    calls = job_calls(pipeline.log)
    assert [call["stage"] for call in calls] == STAGES
    assert all(call["argv"][call["argv"].index("--run-id") + 1] == "nightly-42" for call in calls)
    bucket = stack.local_resources().bucket_name
    assert {call["env"]["ARTIFACT_BUCKET"] for call in calls} == {bucket}
    assert {call["env"]["POWERTOOLS_SERVICE_NAME"] for call in calls} == {"training"}
    assert pipeline.recorder.calls == []
    assert result.output["fit"]["ExitCode"] == 0
    assert any(line.startswith("Publish: succeeded") for line in pipeline.lines)


def test_the_gate_keeping_the_model_succeeds_with_a_notice_and_a_metric(pipeline: Pipeline) -> None:
    result = pipeline.run({"fit": [EXIT_GATE_REJECTED]}, name="run-9")
    assert result.status == "SUCCEEDED"
    assert result.path[-1] == "KeptPreviousModel"
    assert "Publish" not in result.path
    assert pipeline.stages() == ["export", "fit"]
    (notice,) = pipeline.recorder.published()
    assert notice["TopicArn"] == pipeline.spec.substitutions["TrainingTopic"]
    assert "kept the previous model" in notice["Subject"]
    assert "run-9" in notice["Message"]
    service, action, metric = pipeline.recorder.calls[-1]
    assert (service, action) == ("cloudwatch", "putMetricData")
    assert metric["MetricData"][0]["MetricName"] == "GateRejected"


@pytest.mark.parametrize("status", [1, 2, 137])
def test_a_failing_fit_is_notified_not_retried_and_fails_the_execution(
    pipeline: Pipeline, status: int
) -> None:
    result = pipeline.run({"fit": [status]}, name="run-3")
    assert result.status == "FAILED"
    assert result.error == "TrainingFailed"
    assert result.path[-3:] == ["GateOutcome", "NotifyFailure", "TrainingFailed"]
    assert pipeline.stages() == ["export", "fit"]
    (notice,) = pipeline.recorder.published()
    assert notice["Subject"] == "movierec training failed"
    assert notice["Message"].startswith("Training run run-3 failed: ")
    error = json.loads(notice["Message"].removeprefix("Training run run-3 failed: "))
    assert error["Error"] == "States.TaskFailed"
    assert json.loads(error["Cause"])["Containers"][0]["ExitCode"] == status


def test_a_cutoff_in_the_input_reaches_export_and_fit(pipeline: Pipeline) -> None:
    result = pipeline.run(name="rebuild", execution_input={"cutoff": "2025-06-01T00:00:00Z"})
    assert result.status == "SUCCEEDED"
    calls = job_calls(pipeline.log)
    assert [call["argv"][-2:] for call in calls[:2]] == [["--cutoff", "2025-06-01T00:00:00Z"]] * 2
    assert "--cutoff" not in calls[2]["argv"]


def test_an_invalid_cutoff_fails_before_any_task_runs(pipeline: Pipeline) -> None:
    result = pipeline.run(execution_input={"cutoff": 20250601})
    assert (result.status, result.error) == ("FAILED", "InvalidInput")
    assert result.path == ["Plan", "InvalidInput"]
    assert pipeline.stages() == []


def test_a_failed_export_is_retried_once_after_the_capped_delay(pipeline: Pipeline) -> None:
    result = pipeline.run({"export": [1, 0]})
    assert result.status == "SUCCEEDED"
    assert pipeline.stages() == ["export", "export", "fit", "publish"]
    assert pipeline.recorder.sleeps == [1.0]  # 120 s in AWS; capped by max_retry_delay_s locally
    assert result.history[2].attempts == 2


def test_an_export_that_keeps_failing_is_notified_and_fails(pipeline: Pipeline) -> None:
    result = pipeline.run({"export": [1]})
    assert result.status == "FAILED"
    assert result.path[-3:] == ["Export", "NotifyFailure", "TrainingFailed"]
    assert pipeline.stages() == ["export", "export"]
    assert len(pipeline.recorder.published()) == 1


def test_a_failed_publish_is_retried_then_notified(pipeline: Pipeline) -> None:
    result = pipeline.run({"publish": [1]})
    assert result.status == "FAILED"
    assert pipeline.stages() == ["export", "fit", "publish", "publish"]


def test_a_job_that_cannot_start_is_a_task_failure_without_an_exit_status(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    task = LocalEcsTask({}, entrypoint=[str(tmp_path / "missing")], cwd=tmp_path, output=None)
    with pytest.raises(StatesError) as raised:
        task({"Overrides": {"ContainerOverrides": [{"Name": "training", "Command": ["train"]}]}}, None)
    assert raised.value.error == "States.TaskFailed"
    cause = json.loads(raised.value.cause)
    assert cause["StopCode"] == "TaskFailedToStart"
    assert "ExitCode" not in cause["Containers"][0]


def test_ecs_api_errors_are_retried_with_exponential_backoff(definition: dict[str, Any]) -> None:
    attempts: list[str] = []

    def flaky_ecs(parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        attempts.append(parameters["Overrides"]["ContainerOverrides"][0]["Command"][2])
        if len(attempts) <= 2:
            raise StatesError("ECS.AmazonECSException", "Rate exceeded")
        return {"TaskArn": "t", "Containers": [{"ExitCode": 0}]}

    recorder = Recorder()
    result = LocalExecution(
        definition,
        name="r",
        run_task=flaky_ecs,
        call_service=recorder.call,
        sleep=recorder.sleep,
        max_retry_delay_s=1000,
        rng=random.Random(1),
    ).run({})
    assert result.status == "SUCCEEDED"
    assert attempts == ["export", "export", "export", "fit", "publish"]
    # FULL jitter: each delay is drawn from [0, 30 * 2 ** n].
    assert len(recorder.sleeps) == 2
    assert 0 <= recorder.sleeps[0] <= 30
    assert 0 <= recorder.sleeps[1] <= 60


def test_a_fit_that_never_ran_is_a_failure_not_a_gate_verdict(definition: dict[str, Any]) -> None:
    def ecs(parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        stage = parameters["Overrides"]["ContainerOverrides"][0]["Command"][2]
        if stage == "fit":
            cause = {"StopCode": "TaskFailedToStart", "Containers": [{"Name": "training"}]}
            raise StatesError("States.TaskFailed", json.dumps(cause))
        return {"TaskArn": "t", "Containers": [{"ExitCode": 0}]}

    for run_task in (ecs, _timeout_on_fit):
        recorder = Recorder()
        result = LocalExecution(definition, name="r", run_task=run_task, call_service=recorder.call).run()
        assert result.status == "FAILED"
        assert result.path[-2:] == ["NotifyFailure", "TrainingFailed"]
        assert "Publish" not in result.path


def _timeout_on_fit(parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
    if parameters["Overrides"]["ContainerOverrides"][0]["Command"][2] == "fit":
        assert timeout_s == 14400
        raise StatesError("States.Timeout", "the task ran too long")
    return {"TaskArn": "t", "Containers": [{"ExitCode": 0}]}


def test_a_notification_that_keeps_failing_fails_the_execution_loudly(definition: dict[str, Any]) -> None:
    recorder = Recorder(failures={"sns": 10})

    def failing(parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        raise StatesError("States.TaskFailed", "{}")

    result = LocalExecution(
        definition, name="r", run_task=failing, call_service=recorder.call, sleep=recorder.sleep
    ).run()
    assert result.status == "FAILED"
    assert result.error == "SNS.InternalErrorException"
    assert len(recorder.published()) == 4  # the first try and three retries


# ---- the interpreter's semantics -------------------------------------------------------------------------


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
