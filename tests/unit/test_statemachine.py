"""The training pipeline's state machine (infra/statemachine/training.asl.json) as the template deploys it:
its stages, retries, notifications, permissions, schedule and network. Running it locally is tested in
test_statemachine_pipeline.py, the local interpreter's semantics in test_statemachine_semantics.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.local.statemachine import apply_template, load_definition, validate
from infra.local.template import TRAINING_CONTAINER, Stack
from movierec.observability import METRIC_NAMESPACE, MetricName
from tests.unit.statemachine_support import STAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
ASL = REPO_ROOT / "infra" / "statemachine" / "training.asl.json"


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
    assert [states[s.capitalize()].get("Next") for s in STAGES] == ["Features", "GateOutcome", "Published"]


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
