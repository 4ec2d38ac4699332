"""template.yaml: its contract with the settings models, its security properties, and how the local
runner reads and resolves it (infra/local/template/)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from infra.local.errors import UsageError
from infra.local.template import (
    DEFAULT_TEMPLATE,
    LocalCloud,
    Stack,
    UnresolvedError,
    load_template,
    local_environment,
    read_env_vars_file,
    training_environment,
)
from movierec.config import IngestSettings, RecommendSettings, TrainingSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_TEMPLATE = REPO_ROOT / "tests" / "fixtures" / "runner_app" / "template.yaml"
LAYER_REQUIREMENTS = REPO_ROOT / "layers" / "movierec" / "requirements.txt"

SETTINGS_OF: dict[str, type[BaseSettings]] = {
    "IngestFunction": IngestSettings,
    "RecommendFunction": RecommendSettings,
}
PLATFORM_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}
PUBLIC_ROUTES = {"GET /v1/popular", "GET /health"}
PROTECTED_ROUTES = {"GET /v1/recommendations", "GET /v1/movies/{movie_id}/similar"}


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


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


# ---- security properties ---------------------------------------------------------------------------------
# The template as written (before the SAM transform): what it declares is what it deploys, and SAM adds
# only its documented glue (function roles we replace with our own, the schedule's StartExecution role,
# AWSXrayWriteOnlyAccess for traced state machines, Lambda permissions for API Gateway).

KEY = {"Ref": "DataKey"}
KEY_ARN = {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_data_at_rest_is_encrypted_with_the_stack_key(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    (stream,) = resources_of(template, "AWS::Kinesis::Stream").values()
    assert stream["Properties"]["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": KEY}
    assert stream["Properties"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    queues = resources_of(template, "AWS::SQS::Queue")
    assert queues
    for queue in queues.values():
        assert queue["Properties"]["KmsMasterKeyId"] == KEY
    for secret in resources_of(template, "AWS::SecretsManager::Secret").values():
        assert secret["Properties"]["KmsKeyId"] == KEY
    groups = resources_of(template, "AWS::Logs::LogGroup")
    assert len(groups) >= 6
    for group in groups.values():
        assert group["Properties"]["KmsKeyId"] == KEY_ARN
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    topics = resources_of(template, "AWS::SNS::Topic")
    assert set(topics) == {"AlarmTopic", "TrainingTopic"}
    for topic in topics.values():
        assert topic["Properties"]["KmsMasterKeyId"] == KEY
    assert resources["TrainingRepository"]["Properties"]["EncryptionConfiguration"] == {
        "EncryptionType": "KMS",
        "KmsKey": KEY_ARN,
    }
    group = resources["CacheReplicationGroup"]["Properties"]
    assert (group["AtRestEncryptionEnabled"], group["KmsKeyId"]) == (True, KEY)
    assert resources["ServerlessCache"]["Properties"]["KmsKeyId"] == KEY
    cluster = resources["DocumentDbCluster"]["Properties"]
    assert (cluster["StorageEncrypted"], cluster["KmsKeyId"]) == (True, KEY)
    assert template["Globals"]["Function"]["KmsKeyArn"] == KEY_ARN
    assert resources["DataKey"]["Properties"]["EnableKeyRotation"] is True


def test_buckets_are_versioned_encrypted_private_and_tls_only(template: dict[str, Any]) -> None:
    buckets = resources_of(template, "AWS::S3::Bucket")
    assert {"ArtifactBucket", "DeadLetterBucket"} <= set(buckets)
    policies = {
        p["Properties"]["Bucket"]["Ref"]: p for p in resources_of(template, "AWS::S3::BucketPolicy").values()
    }
    for name, bucket in buckets.items():
        properties = bucket["Properties"]
        assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
        (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KEY_ARN}
        assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
        (statement,) = policies[name]["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_cache_and_database_connections_use_tls(template: dict[str, Any], stack: Stack) -> None:
    resources = template["Resources"]
    assert resources["CacheReplicationGroup"]["Properties"]["TransitEncryptionEnabled"] is True
    # ElastiCache Serverless accepts TLS connections only; the URLs the code gets say rediss:// for both.
    for name in ("IngestFunction", "RecommendFunction"):
        url = resources[name]["Properties"]["Environment"]["Variables"]["REDIS_URL"]["Fn::If"]
        assert url[1]["Fn::Sub"].startswith("rediss://")
        assert url[2]["Fn::If"][1]["Fn::Sub"].startswith("rediss://")
    (task,) = resources["TrainingTaskDefinition"]["Properties"]["ContainerDefinitions"]
    (redis_url,) = [item["Value"] for item in task["Environment"] if item["Name"] == "REDIS_URL"]
    assert redis_url["Fn::If"][1]["Fn::Sub"].startswith("rediss://")
    assert resources["DocumentDbParameters"]["Properties"]["Parameters"]["tls"] == "enabled"
    assert "tls=true" in resources["MongoDbSecret"]["Properties"]["SecretString"]["Fn::If"][1]["Fn::Sub"]
    for overrides in ({"CacheMode": "serverless"}, {"CacheMode": "replication-group"}):
        other = Stack.load(DEFAULT_TEMPLATE, parameters={**overrides, "VpcId": "vpc-1"})
        assert other.function("RecommendFunction").environment["REDIS_URL"] is None  # an AWS endpoint


def test_created_cache_and_database_use_the_auth_secret_and_admit_only_our_code(
    template: dict[str, Any],
) -> None:
    resources = template["Resources"]
    token = {"Fn::Sub": "{{resolve:secretsmanager:${RedisAuthSecret}}}"}
    assert resources["CacheReplicationGroup"]["Properties"]["AuthToken"] == token
    assert resources["CacheDefaultUser"]["Properties"]["AuthenticationMode"]["Passwords"] == [token]
    assert resources["ServerlessCache"]["Properties"]["UserGroupId"] == {"Ref": "CacheUserGroup"}
    for name in ("CacheSecurityGroup", "DatabaseSecurityGroup"):
        (rule,) = resources[name]["Properties"]["SecurityGroupIngress"]
        assert rule["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}, name
    for name, group in resources_of(template, "AWS::EC2::SecurityGroup").items():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert "CidrIp" not in rule, f"{name} admits addresses rather than our security group"
    assert resources["DocumentDbCluster"]["Properties"]["DeletionProtection"] is True


def test_private_routes_need_the_jwt_authorizer_and_only_popular_and_health_are_public(
    stack: Stack, template: dict[str, Any]
) -> None:
    routes = {route.route_key: route for route in stack.routes()}
    assert set(routes) == PUBLIC_ROUTES | PROTECTED_ROUTES
    assert {key for key, route in routes.items() if route.authorizer is None} == PUBLIC_ROUTES
    for key in PROTECTED_ROUTES:
        assert routes[key].authorizer == "JwtAuthorizer"
        assert routes[key].authorizer_type == "JWT"
    # Private by default: a route added without Auth gets the JWT authorizer.
    assert template["Resources"]["HttpApi"]["Properties"]["Auth"]["DefaultAuthorizer"] == "JwtAuthorizer"
    for function in resources_of(template, "AWS::Serverless::Function").values():
        for event in function["Properties"].get("Events", {}).values():
            authorizer = event["Properties"].get("Auth", {}).get("Authorizer")
            assert authorizer in {None, "NONE"}, "routes opt out (NONE) or take the default, nothing else"


def test_http_api_has_cors_throttling_and_access_logs(template: dict[str, Any]) -> None:
    api = template["Resources"]["HttpApi"]["Properties"]
    assert api["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert (
        json.loads(" ".join(api["AccessLogSettings"]["Format"].split()))["requestId"] == "$context.requestId"
    )
    assert api["CorsConfiguration"]["AllowMethods"] == ["GET", "OPTIONS"]
    assert api["DefaultRouteSettings"]["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    jwt = api["Auth"]["Authorizers"]["JwtAuthorizer"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert set(jwt["JwtConfiguration"]) == {"issuer", "audience"}


# The only actions granted on Resource "*", each because AWS offers no resource-level permission for it.
UNSCOPABLE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray has no resources to name",
    "xray:PutTelemetryRecords": "X-Ray has no resources to name",
    "ecr:GetAuthorizationToken": "a registry login token is account-wide",
    "cloudwatch:PutMetricData": "no resource-level permissions; the statement pins cloudwatch:namespace",
    "logs:CreateLogDelivery": "vended log delivery (Step Functions logging) takes no resource",
    "logs:GetLogDelivery": "vended log delivery takes no resource",
    "logs:UpdateLogDelivery": "vended log delivery takes no resource",
    "logs:DeleteLogDelivery": "vended log delivery takes no resource",
    "logs:ListLogDeliveries": "vended log delivery takes no resource",
    "logs:PutResourcePolicy": "the account's log resource policy is account-wide",
    "logs:DescribeResourcePolicies": "the account's log resource policy is account-wide",
    "logs:DescribeLogGroups": "a list action; Step Functions and VPC flow logs look their group up",
    "ec2:CreateNetworkInterface": "the MSK poller's interfaces are created in subnets not known here",
    "ec2:DeleteNetworkInterface": "the MSK poller's interfaces do not exist yet when the policy is written",
    "ec2:DescribeNetworkInterfaces": "EC2 Describe* actions take no resource",
    "ec2:DescribeSecurityGroups": "EC2 Describe* actions take no resource",
    "ec2:DescribeSubnets": "EC2 Describe* actions take no resource",
    "ec2:DescribeVpcs": "EC2 Describe* actions take no resource",
}
# A condition that narrows a Resource "*" grant, where the API offers one.
REQUIRED_CONDITIONS = {"cloudwatch:PutMetricData": "cloudwatch:namespace"}


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every statement of the stack's own IAM: roles, policies and SAM state machine policies."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, role in resources_of(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            found.extend((name, statement) for statement in policy["PolicyDocument"]["Statement"])
    for name, policy in resources_of(template, "AWS::IAM::Policy").items():
        found.extend((name, statement) for statement in policy["Properties"]["PolicyDocument"]["Statement"])
    for name, machine in resources_of(template, "AWS::Serverless::StateMachine").items():
        for policy in machine["Properties"].get("Policies", []):
            found.extend((name, statement) for statement in policy["Statement"])
    return found


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_identity_policies_use_no_wildcard_actions_and_scope_resources_to_the_stack(
    template: dict[str, Any],
) -> None:
    statements = _statements(template)
    assert len(statements) > 20
    granted_on_everything: set[str] = set()
    for role, statement in statements:
        assert statement["Effect"] == "Allow", f"{role}: {statement}"
        actions = _as_list(statement["Action"])
        for action in actions:
            assert "*" not in action, f"{role}: {action}"
        resources = _as_list(statement["Resource"])
        if "*" in resources:
            assert resources == ["*"]
            assert set(actions) <= set(UNSCOPABLE_ACTIONS), f"{role}: {statement}"
            granted_on_everything |= set(actions)
            for action in actions:
                if action in REQUIRED_CONDITIONS:
                    assert REQUIRED_CONDITIONS[action] in json.dumps(statement.get("Condition")), role
        for resource in resources:
            # References to the stack's resources or ARNs built from them, never a hard-coded one.
            assert resource == "*" or isinstance(resource, dict), f"{role}: hard-coded {resource}"
    assert granted_on_everything == set(UNSCOPABLE_ACTIONS), "keep the list of justified exceptions exact"
    for name, resource in resources_of(template, "AWS::IAM::Role").items():
        (trust,) = resource["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert set(trust["Principal"]) == {"Service"}, f"{name} is assumed by an AWS service only"


def test_resource_policies_allow_no_wildcards_but_the_key_administrator(template: dict[str, Any]) -> None:
    key_policy = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
    bucket_policies = [
        statement
        for policy in resources_of(template, "AWS::S3::BucketPolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    for statement in [*key_policy, *bucket_policies]:
        actions = _as_list(statement["Action"])
        if statement["Effect"] == "Deny":
            continue  # a deny may be as wide as it likes (the buckets deny every non-TLS request)
        if statement.get("Sid") == "AccountAdministers":
            # AWS's default key policy: the account administers the key through IAM. Without it the key
            # could become unmanageable; "*" in a key policy means this key.
            assert actions == ["kms:*"]
            assert statement["Principal"] == {
                "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
            }
            continue
        assert all("*" not in action for action in actions), statement
        assert "Service" in statement["Principal"], statement
        assert statement["Condition"], f"{statement['Sid']}: a service principal is narrowed to this account"


def test_functions_have_their_own_roles_and_log_groups(template: dict[str, Any]) -> None:
    for name, function in resources_of(template, "AWS::Serverless::Function").items():
        properties = function["Properties"]
        assert properties["Role"] == {"Fn::GetAtt": [f"{name}Role", "Arn"]}
        assert "LogGroup" in properties["LoggingConfig"]
        assert "ReservedConcurrentExecutions" in properties


def test_dead_letter_queue_is_present_encrypted_wired_as_the_failure_destination_and_alarmed(
    template: dict[str, Any], stack: Stack
) -> None:
    resources = template["Resources"]
    queue = resources["DeadLetterQueue"]["Properties"]
    assert queue["KmsMasterKeyId"] == KEY
    assert queue["MessageRetentionPeriod"] == 14 * 86_400
    arn = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    kinesis = resources["IngestFunction"]["Properties"]["Events"]["Stream"]["Properties"]
    assert kinesis["DestinationConfig"] == {"OnFailure": {"Destination": arn}}
    assert resources["IngestMskMapping"]["Properties"]["DestinationConfig"] == {
        "OnFailure": {"Destination": arn}
    }
    (source,) = stack.kinesis_sources("IngestFunction")
    assert source.on_failure_arn == stack.local_resources().dead_letter_queue_arn
    assert resources["IngestFunction"]["Properties"]["Environment"]["Variables"]["DEAD_LETTER_QUEUE_URL"] == {
        "Ref": "DeadLetterQueue"
    }
    sends = [
        statement
        for role, statement in _statements(template)
        if role == "IngestFunctionRole" and "sqs:SendMessage" in _as_list(statement["Action"])
    ]
    assert [statement["Resource"] for statement in sends] == [arn]
    depth = resources["DeadLetterDepthAlarm"]["Properties"]
    assert depth["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert depth["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}
    ]
    assert (depth["Threshold"], depth["ComparisonOperator"]) == (0, "GreaterThanThreshold")


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
        return node

    return bool(value(conditions[name]))


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
