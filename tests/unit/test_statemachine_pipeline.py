"""The training pipeline's state machine run by the local interpreter (infra/local/statemachine/), with a
fake job standing in for ``python -m training_job train``: stages, the gate, retries, notifications."""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.local.statemachine import (
    ExecutionResult,
    LocalEcsTask,
    LocalExecution,
    StatesError,
    load_definition,
)
from infra.local.template import LocalCloud, Stack, training_environment
from tests.unit.statemachine_support import STAGES, Recorder, job_calls, write_fake_job

EXIT_GATE_REJECTED = 3  # training_job's contract: the gate kept the published model


@pytest.fixture(scope="module")
def definition(stack: Stack) -> dict[str, Any]:
    return load_definition(stack.state_machine())


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
    assert result.path == [
        "Plan",
        "PlanLatest",
        "Attribute",
        "Export",
        "Features",
        "Fit",
        "GateOutcome",
        "Publish",
        "Published",
    ]
    assert [call["stage"] for call in job_calls(pipeline.log, attribute=True)] == ["attribute", *STAGES]
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
    assert result.history[3].attempts == 2  # Plan, PlanLatest, Attribute, Export


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
        command = parameters["Overrides"]["ContainerOverrides"][0]["Command"]
        attempts.append("features" if command[0] == "features" else command[2])
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
    assert attempts == ["attribute", "attribute", "attribute", "export", "features", "fit", "publish"]
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


def test_a_failed_attribution_is_notified_and_training_goes_on(pipeline: Pipeline) -> None:
    result = pipeline.run({"attribute": [1]}, name="run-5")
    assert result.status == "SUCCEEDED"
    assert result.path[:5] == ["Plan", "PlanLatest", "Attribute", "NotifyAttributionFailure", "Export"]
    assert result.path[-1] == "Published"
    assert [c["stage"] for c in job_calls(pipeline.log, attribute=True)] == ["attribute", *STAGES]
    (notice,) = pipeline.recorder.published()
    assert "online metrics failed" in notice["Subject"]
    assert "run-5" in notice["Message"]


def test_the_attribution_stage_runs_with_the_run_id_and_no_cutoff(pipeline: Pipeline) -> None:
    pipeline.run(name="rebuild", execution_input={"cutoff": "2025-06-01T00:00:00Z"})
    (call,) = [c for c in job_calls(pipeline.log, attribute=True) if c["stage"] == "attribute"]
    assert call["argv"] == ["train", "--stage", "attribute", "--run-id", "rebuild"]


def test_the_feature_stage_runs_after_export_and_a_failure_is_notified_and_training_goes_on(
    pipeline: Pipeline,
) -> None:
    result = pipeline.run({"features": [1]}, name="run-9")
    assert result.status == "SUCCEEDED"
    assert result.path[3:6] == ["Export", "Features", "NotifyFeaturesFailure"]
    assert result.path[-1] == "Published"
    features = [c for c in job_calls(pipeline.log, features=True) if c["stage"] == "features"]
    assert [c["argv"] for c in features] == [["features", "--run-id", "run-9"]] * 2  # one retry
    (notice,) = pipeline.recorder.published()
    assert "feature pipeline failed" in notice["Subject"]
    assert pipeline.stages() == STAGES
