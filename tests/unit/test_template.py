"""template.yaml: its contract with the settings models, its functions, layer and stream mapping, and its
deployment switches. Its security properties are tested in test_template_security.py, how the local
runner reads and resolves it (infra/local/template/) in test_template_local.py."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from infra.local.template import LocalCloud, Stack, local_environment, training_environment
from movierec.config import IngestSettings, RecommendSettings, TrainingSettings
from tests.unit.template_support import REPO_ROOT, resources_of

LAYER_REQUIREMENTS = REPO_ROOT / "layers" / "movierec" / "requirements.txt"

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "IngestFunction": IngestSettings,
    "RecommendFunction": RecommendSettings,
}
PLATFORM_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}


def env_names(settings: type[BaseSettings]) -> set[str]:
    return {name.upper() for name in settings.model_fields}


def required_names(settings: type[BaseSettings]) -> set[str]:
    return {name.upper() for name, field in settings.model_fields.items() if field.is_required()}


# ---- the settings contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", sorted(SETTINGS_OF))
def test_each_function_sets_exactly_fields_of_its_settings_model(stack: Stack, function_id: str) -> None:
    settings = SETTINGS_OF[function_id]
    declared = set(stack.function(function_id).environment) - PLATFORM_VARIABLES
    assert declared <= env_names(settings), (
        f"not fields of {settings.__name__}: {declared - env_names(settings)}"
    )
    assert required_names(settings) <= declared, f"required but unset: {required_names(settings) - declared}"
    if "MONGODB_SECRET_ARN" in env_names(settings):
        assert declared & {"MONGODB_SECRET_ARN", "MONGODB_URI"}, "MongoDB must be reachable"


@pytest.mark.parametrize("function_id", sorted(SETTINGS_OF))
def test_the_locally_resolved_environment_validates_as_the_settings_model(
    stack: Stack, function_id: str
) -> None:
    spec = stack.function(function_id)
    environment = local_environment(spec, LocalCloud(), environ={})
    fields = {k.lower(): v for k, v in environment.items() if k in env_names(SETTINGS_OF[function_id])}
    SETTINGS_OF[function_id].model_validate(fields)


def test_every_function_has_a_settings_model_and_powertools_service_name(stack: Stack) -> None:
    assert set(stack.function_ids()) == set(SETTINGS_OF)
    names = {stack.function(f).environment["POWERTOOLS_SERVICE_NAME"] for f in SETTINGS_OF}
    assert names == {"ingest", "recommend"}
    for function_id in SETTINGS_OF:
        environment = stack.function(function_id).environment
        assert environment["POWERTOOLS_METRICS_NAMESPACE"] == "MovieRec"
        assert environment["LOG_LEVEL"] == "INFO"


def test_the_training_task_sets_exactly_fields_of_training_settings(template: dict[str, Any]) -> None:
    (container,) = template["Resources"]["TrainingTaskDefinition"]["Properties"]["ContainerDefinitions"]
    declared = {item["Name"] for item in container["Environment"]} - PLATFORM_VARIABLES
    assert declared <= env_names(TrainingSettings)
    assert required_names(TrainingSettings) <= declared
    assert container["Command"] == ["train"]
    assert container["ReadonlyRootFilesystem"] is True


def test_the_training_environment_validates_as_training_settings(stack: Stack) -> None:
    environment, command = training_environment(stack, LocalCloud(), environ={})
    fields = {k.lower(): v for k, v in environment.items() if k in env_names(TrainingSettings)}
    settings = TrainingSettings.model_validate(fields)
    assert settings.artifact_bucket == stack.local_resources().bucket_name
    assert environment["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert "REDIS_AUTH_SECRET_ARN" not in environment
    assert command == ["train"]


def test_the_training_run_pushes_to_the_pushgateway_make_up_started(stack: Stack, tmp_path: Path) -> None:
    assert "PUSHGATEWAY_URL" not in training_environment(stack, LocalCloud(), environ={})[0]
    (tmp_path / "cloud.json").write_text('{"pushgateway_url": "http://127.0.0.1:9091"}', encoding="utf-8")
    cloud = LocalCloud.load(tmp_path, environ={})
    assert training_environment(stack, cloud, environ={})[0]["PUSHGATEWAY_URL"] == "http://127.0.0.1:9091"
    shell = LocalCloud.load(tmp_path, environ={"PUSHGATEWAY_URL": "http://10.0.0.5:9091"})
    assert training_environment(stack, shell, environ={})[0]["PUSHGATEWAY_URL"] == "http://10.0.0.5:9091"


# ---- functions, layer, stream mapping --------------------------------------------------------------------


def test_functions_are_python312_arm64_traced_and_share_the_layer(template: dict[str, Any]) -> None:
    function_globals = template["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Layers"] == [{"Ref": "MovieRecLayer"}]
    layer = template["Resources"]["MovieRecLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert layer["Properties"]["ContentUri"] == "layers/movierec/"
    handlers = {
        f: r["Properties"]["Handler"] for f, r in resources_of(template, "AWS::Serverless::Function").items()
    }
    assert handlers == {"IngestFunction": "app.lambda_handler", "RecommendFunction": "app.lambda_handler"}


def test_layer_requirements_ship_runtime_dependencies_but_not_boto3_or_torch() -> None:
    """The layer ships exactly pyproject's runtime dependencies, extras included, less boto3 (the
    Lambda runtime has it); torch is the training job's alone."""
    lines = [line.split("#")[0].strip() for line in LAYER_REQUIREMENTS.read_text().splitlines()]
    shipped = {_requirement_name(line) for line in lines if line}
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert shipped == {_requirement_name(line) for line in project} - {"boto3"}
    assert "torch" not in shipped
    assert any(line.startswith("aws-lambda-powertools[tracer]") for line in lines)
    assert any(line.startswith("redis[hiredis]") for line in lines)


def _requirement_name(line: str) -> str:
    """``redis[hiredis]>=5.0`` -> ``redis[hiredis]``: the name with its extras, without the version."""
    for marker in "><=!~;":
        line = line.split(marker, maxsplit=1)[0]
    return line.strip()


def test_ingest_mapping_reports_item_failures_bisects_bounds_retries_and_dead_letters(stack: Stack) -> None:
    (source,) = stack.kinesis_sources("IngestFunction")
    resources = stack.local_resources()
    assert source.stream_name == resources.stream_name
    assert source.report_batch_item_failures
    assert source.bisect_on_error
    assert 0 <= source.max_retry_attempts < 100
    assert 60 <= source.max_record_age_s <= 7 * 86_400
    assert source.batch_size >= 1
    assert source.on_failure_arn == resources.dead_letter_queue_arn
    assert source.starting_position == "TRIM_HORIZON"


ON_DEMAND_STARTING_SHARDS = 4  # an on-demand Kinesis stream's shards before it scales


def test_ingest_scales_per_shard_within_its_reserved_concurrency(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    kinesis = template["Resources"]["IngestFunction"]["Properties"]["Events"]["Stream"]["Properties"]
    assert kinesis["ParallelizationFactor"] == {"Ref": "IngestParallelizationFactor"}
    factor = parameters["IngestParallelizationFactor"]
    assert (factor["MinValue"], factor["MaxValue"]) == (1, 10)  # Lambda's range
    assert template["Resources"]["IngestFunction"]["Properties"]["ReservedConcurrentExecutions"] == {
        "Ref": "IngestReservedConcurrency"
    }
    # At the defaults the stream's starting shards, each with its concurrent batches, are not throttled.
    reserved = parameters["IngestReservedConcurrency"]["Default"]
    assert reserved >= ON_DEMAND_STARTING_SHARDS * factor["Default"]


# ---- deployment switches ------------------------------------------------------------------------------


def test_functions_join_the_vpc_when_one_is_given(template: dict[str, Any]) -> None:
    for name in ("IngestFunction", "RecommendFunction"):
        condition, inside, outside = template["Resources"][name]["Properties"]["VpcConfig"]["Fn::If"]
        assert condition == "UseVpc"
        assert inside["SecurityGroupIds"] == [{"Ref": "FunctionSecurityGroup"}]
        assert outside == {"Ref": "AWS::NoValue"}


def test_kinesis_and_msk_are_each_switched_on_and_both_may_feed_one_deployment(
    template: dict[str, Any],
) -> None:
    kinesis = template["Resources"]["IngestFunction"]["Properties"]["Events"]["Stream"]["Properties"]
    assert kinesis["Enabled"] == {"Fn::If": ["UseKinesis", True, False]}
    msk = template["Resources"]["IngestMskMapping"]
    assert msk["Condition"] == "UseMsk"
    assert msk["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert msk["Properties"]["DestinationConfig"] == kinesis["DestinationConfig"]  # one replay queue
    assert "both" in template["Parameters"]["StreamSource"]["AllowedValues"]
    conditions = template["Conditions"]
    for source, uses_kinesis, uses_msk in (
        ("kinesis", True, False),
        ("msk", False, True),
        ("both", True, True),
    ):
        assert _condition(conditions, "UseKinesis", StreamSource=source) is uses_kinesis
        assert _condition(conditions, "UseMsk", StreamSource=source) is uses_msk


def _condition(conditions: dict[str, Any], name: str, **parameters: str) -> bool:
    """Evaluates a condition built of Fn::Or / Fn::Equals over Refs, as CloudFormation would."""

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return parameters[node["Ref"]]
        if isinstance(node, dict) and "Fn::Equals" in node:
            left, right = node["Fn::Equals"]
            return value(left) == value(right)
        if isinstance(node, dict) and "Fn::Or" in node:
            return any(value(item) for item in node["Fn::Or"])
        if isinstance(node, dict) and "Condition" in node:
            return value(conditions[node["Condition"]])
        return node

    return bool(value(conditions[name]))


def test_the_cache_is_spoken_to_as_a_cluster_exactly_when_it_is_one(template: dict[str, Any]) -> None:
    """ElastiCache Serverless speaks only the cluster protocol; the created replication group runs with
    cluster mode disabled; an external cache is what RedisClusterMode says."""
    resources = template["Resources"]
    task = resources["TrainingTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["Environment"]
    settings = [
        resources["IngestFunction"]["Properties"]["Environment"]["Variables"]["REDIS_CLUSTER"],
        resources["RecommendFunction"]["Properties"]["Environment"]["Variables"]["REDIS_CLUSTER"],
        next(v["Value"] for v in task if v["Name"] == "REDIS_CLUSTER"),
    ]
    conditions = template["Conditions"]

    def resolved(node: Any, **parameters: str) -> Any:
        if isinstance(node, dict) and "Fn::If" in node:
            name, then, otherwise = node["Fn::If"]
            return resolved(then if _condition(conditions, name, **parameters) else otherwise, **parameters)
        if isinstance(node, dict) and "Ref" in node:
            return parameters[node["Ref"]]
        return node

    for mode, external, expected in (
        ("serverless", "false", "true"),
        ("replication-group", "true", "false"),
        ("external", "false", "false"),
        ("external", "true", "true"),
    ):
        for setting in settings:
            assert resolved(setting, CacheMode=mode, RedisClusterMode=external) == expected, (mode, external)


def test_recommend_uses_snapstart_on_its_published_alias_by_default(template: dict[str, Any]) -> None:
    properties = template["Resources"]["RecommendFunction"]["Properties"]
    assert properties["AutoPublishAlias"] == "live"
    assert properties["SnapStart"] == {"ApplyOn": {"Fn::If": ["UseSnapStart", "PublishedVersions", "None"]}}
    assert template["Parameters"]["EnableSnapStart"]["Default"] == "true"
    assert template["Conditions"]["UseSnapStart"] == {"Fn::Equals": [{"Ref": "EnableSnapStart"}, "true"]}
    assert "EphemeralStorage" not in properties, "SnapStart allows at most 512 MB of /tmp"


def test_training_image_repository_is_immutable_encrypted_and_scanned(template: dict[str, Any]) -> None:
    repository = template["Resources"]["TrainingRepository"]["Properties"]
    assert repository["ImageTagMutability"] == "IMMUTABLE"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}
    task = template["Resources"]["TrainingTaskDefinition"]["Properties"]
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    (container,) = task["ContainerDefinitions"]
    assert container["Image"] == {"Fn::Sub": "${TrainingRepository.RepositoryUri}:${TrainingImageTag}"}


def test_checkov_suppressions_carry_a_reason(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert len(skip.get("comment", "")) > 20, f"{name}: {skip['id']} needs a written reason"
