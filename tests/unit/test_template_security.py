"""template.yaml's security properties: encryption at rest and in transit, who may reach the cache and the
database, the API's authorizer, least-privilege IAM, and the dead-letter path."""

from __future__ import annotations

import json
from typing import Any

from infra.local.template import DEFAULT_TEMPLATE, Stack
from tests.unit.template_support import resources_of

PUBLIC_ROUTES = {"GET /v1/popular", "GET /health"}
PROTECTED_ROUTES = {"GET /v1/recommendations", "GET /v1/movies/{movie_id}/similar"}

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
