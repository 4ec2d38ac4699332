"""How the local runner reads and resolves template.yaml (infra/local/template/): YAML tags, names,
function specs, intrinsics and conditions, and the environment a function gets locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.local.errors import UsageError
from infra.local.template import (
    DEFAULT_TEMPLATE,
    LocalCloud,
    Stack,
    UnresolvedError,
    load_template,
    local_environment,
    read_env_vars_file,
)
from tests.unit.template_support import FIXTURE_TEMPLATE

# ---- reading and resolving --------------------------------------------------------------------------------


def test_short_tags_load_as_their_long_forms(template: dict[str, Any]) -> None:
    ingest = template["Resources"]["IngestFunction"]["Properties"]
    assert ingest["Role"] == {"Fn::GetAtt": ["IngestFunctionRole", "Arn"]}
    assert ingest["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-ingest"}
    assert ingest["Environment"]["Variables"]["MONGODB_DATABASE"] == {"Ref": "MongoDbDatabase"}
    assert ingest["Environment"]["Variables"]["REDIS_URL"]["Fn::If"][0] == "CreateServerlessCache"
    assert template["Conditions"]["CreateUserPool"] == {"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}


def test_names_derive_from_the_stack_name(stack: Stack) -> None:
    resources = stack.local_resources()
    assert resources.stream_name == "movierec-local-events"
    assert resources.dead_letter_queue_name == "movierec-local-ingest-dlq"
    assert resources.bucket_name == "movierec-local-artifacts-123456789012-us-east-1"
    assert resources.dead_letter_bucket_name == "movierec-local-dead-letters-123456789012-us-east-1"
    assert resources.mongodb_secret_name == "movierec-local/mongodb-uri"
    assert resources.redis_auth_secret_name == "movierec-local/redis-auth-token"
    assert resources.stream_arn == "arn:aws:kinesis:us-east-1:123456789012:stream/movierec-local-events"
    other = Stack.load(DEFAULT_TEMPLATE, stack_name="prod").local_resources()
    assert other.stream_name == "prod-events"


def test_function_spec_merges_globals_and_resolves_references() -> None:
    stack = Stack.load(FIXTURE_TEMPLATE, stack_name="fx", endpoint_url="http://127.0.0.1:4566")
    spec = stack.function("StreamFunction")
    assert spec.function_name == "fx-stream"
    assert spec.handler == "stream_app.handler"
    assert spec.code_dir == FIXTURE_TEMPLATE.parent / "stream"
    assert spec.layer_dirs == (FIXTURE_TEMPLATE.parent / "layer",)
    assert (spec.memory_mb, spec.timeout_s) == (256, 7)
    assert spec.environment["SHARED_FLAG"] == "from-globals"
    assert spec.environment["GREETING"] == "hello from fx"
    assert spec.environment["DEAD_LETTER_QUEUE_URL"] == "http://127.0.0.1:4566/123456789012/fx-dlq"
    assert spec.environment["REDIS_URL"] == "redis://template-value:6379/0"  # the If's false branch
    api = stack.function("ApiFunction")
    assert api.timeout_s == 3
    assert api.function_name == "fx-ApiFunction"
    assert api.environment["UNKNOWABLE"] is None


def test_parameters_and_conditions_follow_overrides() -> None:
    stack = Stack.load(FIXTURE_TEMPLATE, parameters={"Greeting": "hi", "UseCache": "true"})
    assert stack.condition("CacheEnabled") is True
    assert stack.exists("Cache")
    spec = stack.function("StreamFunction")
    assert spec.environment["GREETING"] == "hi from movierec-local"
    assert spec.environment["REDIS_URL"] is None  # an ElastiCache endpoint exists only in AWS


def test_resolver_handles_the_intrinsics_the_templates_use(stack: Stack) -> None:
    assert stack.resolve({"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]}) == "a-us-east-1"
    assert stack.resolve({"Fn::Select": [1, {"Fn::Split": [",", "x,y,z"]}]}) == "y"
    assert stack.resolve({"Fn::Sub": ["${A}-${!Literal}", {"A": "v"}]}) == "v-${Literal}"
    assert stack.resolve({"Fn::Sub": "${EventStream.Arn}"}).endswith(":stream/movierec-local-events")
    assert stack.resolve([{"Ref": "AWS::NoValue"}, 1]) == [1]
    assert stack.resolve({"Fn::If": ["CreateUserPool", "pool", "external"]}) == "pool"
    assert stack.parameter("JwtAudience") == [""]
    with pytest.raises(UnresolvedError):
        stack.resolve({"Fn::ImportValue": "elsewhere"})
    with pytest.raises(UnresolvedError):
        stack.resolve({"Ref": "NoSuchThing"})


def test_unknown_function_names_the_known_ones(stack: Stack) -> None:
    with pytest.raises(UsageError, match="IngestFunction, RecommendFunction"):
        stack.function("Nope")


def test_fixture_routes_carry_methods_paths_auth_and_scopes() -> None:
    routes = {r.route_key: r for r in Stack.load(FIXTURE_TEMPLATE).routes()}
    assert routes["GET /public"].authorizer is None
    assert routes["GET /items/{item_id}"].authorizer == "Jwt"
    assert routes["ANY /files/{proxy+}"].method == "ANY"
    assert routes["GET /scoped"].scopes == ("movies.read",)
    cors = Stack.load(FIXTURE_TEMPLATE).http_api_cors()
    assert cors == {
        "allow_origins": ("https://app.example",),
        "allow_headers": ("authorization",),
        "allow_methods": ("GET", "POST"),
        "max_age": 60,
    }


def test_unreadable_or_non_template_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read template"):
        load_template(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("a: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_template(tmp_path / "bad.yaml")
    (tmp_path / "plain.yaml").write_text("a: 1\n")
    with pytest.raises(UsageError, match="no Resources"):
        load_template(tmp_path / "plain.yaml")


# ---- the local environment ------------------------------------------------------------------------------


def test_local_environment_points_at_the_local_cloud_and_drops_redis_auth() -> None:
    spec = Stack.load(FIXTURE_TEMPLATE).function("StreamFunction")
    cloud = LocalCloud(
        aws_endpoint_url="http://127.0.0.1:9", redis_url="redis://r:1/0", mongodb_uri="mongodb://m"
    )
    environment = local_environment(spec, cloud, environ={})
    assert environment["REDIS_URL"] == "redis://r:1/0"
    assert environment["MONGODB_URI"] == "mongodb://m"
    assert "REDIS_AUTH_SECRET_ARN" not in environment
    assert environment["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "movierec-local-stream"
    assert environment["AWS_SAM_LOCAL"] == "true"
    assert environment["AWS_REGION"] == "us-east-1"


def test_precedence_is_template_then_cloud_then_shell_then_env_vars_file() -> None:
    spec = Stack.load(FIXTURE_TEMPLATE).function("StreamFunction")
    cloud = LocalCloud(redis_url="redis://cloud:1/0")
    shell = {"REDIS_URL": "redis://shell:1/0", "GREETING": "shell", "NOT_DECLARED": "x"}
    overrides = {"Parameters": {"GREETING": "params", "EXTRA": 5}, "StreamFunction": {"GREETING": "function"}}
    environment = local_environment(spec, cloud, environ=shell, overrides=overrides)
    assert environment["REDIS_URL"] == "redis://shell:1/0"
    assert environment["GREETING"] == "function"
    assert environment["EXTRA"] == "5"
    assert "NOT_DECLARED" not in environment
    assert local_environment(spec, cloud, environ={})["REDIS_URL"] == "redis://cloud:1/0"


def test_local_cloud_reads_cloud_json_and_the_shell_wins(tmp_path: Path) -> None:
    assert LocalCloud.load(tmp_path, {}) == LocalCloud()
    (tmp_path / "cloud.json").write_text(
        json.dumps({"redis_url": "redis://saved", "AWS_ENDPOINT_URL": "http://s"})
    )
    cloud = LocalCloud.load(tmp_path, {"MONGODB_URI": "mongodb://shell"})
    assert cloud == LocalCloud(
        aws_endpoint_url="http://s", redis_url="redis://saved", mongodb_uri="mongodb://shell"
    )
    (tmp_path / "cloud.json").write_text("{broken")
    with pytest.raises(UsageError, match="unreadable"):
        LocalCloud.load(tmp_path, {})


def test_env_vars_file_must_be_sams_shape(tmp_path: Path) -> None:
    good = tmp_path / "env.json"
    good.write_text(json.dumps({"Parameters": {"A": "1"}}))
    assert read_env_vars_file(good) == {"Parameters": {"A": "1"}}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"A": "1"}))
    with pytest.raises(UsageError, match="must look like"):
        read_env_vars_file(bad)
    with pytest.raises(UsageError, match="cannot read"):
        read_env_vars_file(tmp_path / "missing.json")
