"""``template.yaml`` read the way the local runner needs it: functions, routes, stream sources, names.

CloudFormation short tags (``!Ref``, ``!Sub``, ``!GetAtt``, ``!If`` ...) load as their long forms, and a
small resolver evaluates intrinsics for a local stack (default ``movierec-local`` in us-east-1, account
123456789012). What cannot be known locally (an ElastiCache endpoint, a KMS key) raises
:class:`UnresolvedError`; environment variables then take a local default or a value from the local cloud
(``.local/cloud.json``, written by ``python -m infra.local up``, or the shell).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.local.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"
STACK_NAME = "movierec-local"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
DEFAULT_ENDPOINT_URL = "http://127.0.0.1:4566"
LOCAL_API_ID = "local"
# The Cognito ids the template's own user pool gets locally, so its JWT authorizer resolves to
# issuer https://cognito-idp.us-east-1.amazonaws.com/us-east-1_local and audience local-web-client.
LOCAL_USER_POOL_ID = f"{REGION}_local"
LOCAL_USER_POOL_CLIENT_ID = "local-web-client"

# The logical ids the local cloud and the runner rely on; tests/unit/test_template.py keeps them present.
STREAM_ID = "EventStream"
BUCKET_ID = "ArtifactBucket"
DEAD_LETTER_QUEUE_ID = "DeadLetterQueue"
DEAD_LETTER_BUCKET_ID = "DeadLetterBucket"  # optional
MONGODB_SECRET_ID = "MongoDbSecret"
REDIS_AUTH_SECRET_ID = "RedisAuthSecret"
TRAINING_TASK_ID = "TrainingTaskDefinition"
TRAINING_CONTAINER = "training"

FUNCTION_TYPES = frozenset({"AWS::Serverless::Function"})
STATE_MACHINE_TYPES = frozenset({"AWS::Serverless::StateMachine"})
LOCAL_TASK_DEFINITION_REVISION = 1
PUBLIC = "NONE"


# ---- loading ----------------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long (JSON) forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute.With.Dots -> ["Resource", "Attribute.With.Dots"]
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short tags included; UsageError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read template {path}: {error.strerror}") from error
    try:
        document = yaml.load(text, Loader=_CfnLoader)
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise UsageError(f"{path} is not a CloudFormation template (no Resources)")
    return document


# ---- the local cloud ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalCloud:
    """Where the local stand-ins listen. The shell's variables win over ``.local/cloud.json``."""

    aws_endpoint_url: str = DEFAULT_ENDPOINT_URL
    redis_url: str | None = None
    mongodb_uri: str | None = None

    @classmethod
    def load(cls, state_dir: Path, environ: Mapping[str, str] | None = None) -> LocalCloud:
        environ = os.environ if environ is None else environ
        saved: dict[str, Any] = {}
        cloud_file = state_dir / "cloud.json"
        if cloud_file.is_file():
            try:
                loaded = json.loads(cloud_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise UsageError(f"{cloud_file} is unreadable ({error}); run `make up` again") from error
            if isinstance(loaded, dict):
                saved = loaded

        def pick(name: str) -> str | None:
            value = environ.get(name.upper()) or saved.get(name) or saved.get(name.upper())
            return str(value) if value else None

        return cls(
            aws_endpoint_url=pick("aws_endpoint_url") or DEFAULT_ENDPOINT_URL,
            redis_url=pick("redis_url"),
            mongodb_uri=pick("mongodb_uri"),
        )


def state_dir_for(template_path: Path) -> Path:
    """``.local/`` next to the template: checkpoints, cloud.json and other local state live there."""
    return template_path.resolve().parent / ".local"


# ---- what the runner consumes -------------------------------------------------------------------------


@dataclass(frozen=True)
class KinesisSource:
    """A function's Kinesis event-source mapping, as the template configures it."""

    function_id: str
    stream_name: str
    stream_arn: str
    starting_position: str = "TRIM_HORIZON"
    batch_size: int = 100
    batching_window_s: int = 0
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    max_retry_attempts: int = -1
    max_record_age_s: int = -1
    on_failure_arn: str | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Route:
    """One HttpApi route: ``GET /v1/movies/{movie_id}/similar`` and who may call it."""

    method: str
    path: str
    function_id: str
    authorizer: str | None  # None: public
    authorizer_type: str = "JWT"  # JWT, NONE, or what the runner cannot emulate (REQUEST, AWS_IAM)
    scopes: tuple[str, ...] = ()
    issuer: str | None = None  # a JWT authorizer's JwtConfiguration; None when it cannot be resolved
    audience: tuple[str, ...] = ()

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    function_name: str
    handler: str
    code_dir: Path
    layer_dirs: tuple[Path, ...]
    memory_mb: int
    timeout_s: int
    runtime: str
    role_arn: str
    environment: Mapping[str, str | None]
    """The template's variables, Globals merged; None where the value exists only in AWS."""

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"


@dataclass(frozen=True)
class StateMachineSpec:
    """A state machine whose definition is a file (``DefinitionUri``), as the local runner executes it."""

    logical_id: str
    name: str
    definition_path: Path
    substitutions: Mapping[str, str | None]
    """``DefinitionSubstitutions`` resolved for the local stack; None where the value exists only in AWS."""

    @property
    def arn(self) -> str:
        return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{self.name}"


@dataclass(frozen=True)
class LocalResources:
    """The names the local cloud creates; the same ones the template gives AWS."""

    stack_name: str
    region: str
    account_id: str
    stream_name: str
    bucket_name: str
    dead_letter_queue_name: str
    mongodb_secret_name: str
    redis_auth_secret_name: str
    dead_letter_bucket_name: str | None = None
    streams: tuple[str, ...] = ()
    buckets: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    dead_letter_queue_url: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def stream_arn(self) -> str:
        return f"arn:aws:kinesis:{self.region}:{self.account_id}:stream/{self.stream_name}"

    @property
    def dead_letter_queue_arn(self) -> str:
        return f"arn:aws:sqs:{self.region}:{self.account_id}:{self.dead_letter_queue_name}"

    def to_json(self) -> dict[str, Any]:
        return {
            "stack_name": self.stack_name,
            "region": self.region,
            "account_id": self.account_id,
            "stream_name": self.stream_name,
            "stream_arn": self.stream_arn,
            "bucket_name": self.bucket_name,
            "dead_letter_queue_name": self.dead_letter_queue_name,
            "dead_letter_queue_url": self.dead_letter_queue_url,
            "dead_letter_bucket_name": self.dead_letter_bucket_name,
            "mongodb_secret_name": self.mongodb_secret_name,
            "redis_auth_secret_name": self.redis_auth_secret_name,
        }


# ---- resolving intrinsics ------------------------------------------------------------------------------


class UnresolvedError(Exception):
    """A value that exists only in AWS (an endpoint, a generated id) or a template error."""


class _NoValue:
    """``AWS::NoValue``: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


def queue_url(endpoint_url: str | None, account_id: str, queue_name: str, region: str = REGION) -> str:
    base = endpoint_url.rstrip("/") if endpoint_url else f"https://sqs.{region}.amazonaws.com"
    return f"{base}/{account_id}/{queue_name}"


class Stack:
    """A template evaluated for one local stack: parameters, conditions, names and environments."""

    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        template_path: Path = DEFAULT_TEMPLATE,
        stack_name: str = STACK_NAME,
        parameters: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.template = template
        self.template_path = template_path
        self.base_dir = template_path.resolve().parent
        self.stack_name = stack_name
        self.endpoint_url = endpoint_url
        self.resources: dict[str, dict[str, Any]] = dict(template.get("Resources") or {})
        self._parameter_overrides = dict(parameters or {})
        self._conditions: dict[str, bool] = {}

    @classmethod
    def load(
        cls,
        template_path: Path = DEFAULT_TEMPLATE,
        *,
        stack_name: str = STACK_NAME,
        parameters: Mapping[str, str] | None = None,
        endpoint_url: str | None = None,
    ) -> Stack:
        return cls(
            load_template(template_path),
            template_path=template_path,
            stack_name=stack_name,
            parameters=parameters,
            endpoint_url=endpoint_url,
        )

    # -- parameters and conditions --

    def parameter(self, name: str) -> str | list[str]:
        declared = (self.template.get("Parameters") or {}).get(name)
        if declared is None:
            raise UnresolvedError(f"no parameter {name}")
        if name in self._parameter_overrides:
            raw: Any = self._parameter_overrides[name]
        elif "Default" in declared:
            raw = declared["Default"]
        else:
            raise UnresolvedError(f"parameter {name} has no default; pass it as a parameter override")
        text = "" if raw is None else str(raw)
        if str(declared.get("Type", "String")).startswith(("CommaDelimitedList", "List<")):
            return [item.strip() for item in text.split(",")] if text else [""]
        return text

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            definition = (self.template.get("Conditions") or {}).get(name)
            if definition is None:
                raise UnresolvedError(f"no condition {name}")
            self._conditions[name] = self._truth(definition)
        return self._conditions[name]

    def _truth(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1:
            ((key, args),) = node.items()
            if key == "Condition":
                return self.condition(str(args))
            if key == "Fn::Equals":
                left, right = (self.resolve(arg) for arg in args)
                return bool(_comparable(left) == _comparable(right))
            if key == "Fn::Not":
                return not self._truth(args[0])
            if key == "Fn::And":
                return all(self._truth(arg) for arg in args)
            if key == "Fn::Or":
                return any(self._truth(arg) for arg in args)
        raise UnresolvedError(f"not a condition: {node!r}")

    def exists(self, logical_id: str) -> bool:
        resource = self.resources.get(logical_id)
        if resource is None:
            return False
        condition = resource.get("Condition")
        return condition is None or self.condition(str(condition))

    def of_type(self, *types: str) -> list[str]:
        return [
            logical_id
            for logical_id, resource in self.resources.items()
            if resource.get("Type") in types and self.exists(logical_id)
        ]

    # -- intrinsics --

    def resolve(self, node: Any) -> Any:
        """Evaluate intrinsic functions; raises UnresolvedError for what only AWS knows."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, args),) = node.items()
            if key == "Ref":
                return self._ref(str(args))
            if key == "Condition":
                return self.condition(str(args))
            if key.startswith("Fn::"):
                return self._function(key, args)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def resolve_text(self, node: Any) -> str:
        value = self.resolve(node)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise UnresolvedError(f"not a scalar: {value!r}")

    def _function(self, key: str, args: Any) -> Any:
        if key == "Fn::GetAtt":
            parts = args.split(".", 1) if isinstance(args, str) else list(args)
            return self._get_att(str(parts[0]), str(self.resolve(parts[1])))
        if key == "Fn::Sub":
            return self._sub(args)
        if key == "Fn::If":
            name, when_true, when_false = args
            return self.resolve(when_true if self.condition(str(name)) else when_false)
        if key == "Fn::Join":
            separator, items = args
            values = self.resolve(items)
            return str(separator).join(_text(value) for value in values)
        if key == "Fn::Select":
            index, items = args
            values = self.resolve(items)
            return values[int(self.resolve(index))]
        if key == "Fn::Split":
            separator, text = args
            return str(self.resolve(text)).split(str(separator))
        if key == "Fn::GetAZs":
            return [f"{REGION}{zone}" for zone in "abc"]
        if key == "Fn::FindInMap":
            map_name, first, second = (self.resolve(arg) for arg in args)
            try:
                return self.template["Mappings"][map_name][first][second]
            except KeyError as error:
                raise UnresolvedError(f"no mapping {map_name}/{first}/{second}") from error
        if key == "Fn::Base64":
            import base64

            return base64.b64encode(str(self.resolve(args)).encode()).decode()
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(args), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self.resolve(args))
        if key in {"Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"}:
            return self._truth({key: args})
        raise UnresolvedError(f"{key} is not available locally")

    def _sub(self, args: Any) -> str:
        if isinstance(args, list):
            text, variables = str(args[0]), dict(args[1] or {})
        else:
            text, variables = str(args), {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return _text(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return _text(self._get_att(logical_id, attribute))
            return _text(self._ref(name))

        # ${!Literal} is CloudFormation's escape for a literal ${Literal}.
        return _SUB_VARIABLE.sub(replace, text).replace("${!", "${")

    def _ref(self, name: str) -> Any:
        pseudo = {
            "AWS::StackName": self.stack_name,
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{self.stack_name}/local",
            "AWS::NotificationARNs": [],
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in (self.template.get("Parameters") or {}):
            return self.parameter(name)
        resource = self.resources.get(name)
        if resource is None:
            raise UnresolvedError(f"Ref to unknown {name}")
        return self._physical_id(name, resource)

    def _property(self, logical_id: str, name: str) -> str | None:
        properties = self.resources[logical_id].get("Properties") or {}
        return self.resolve_text(properties[name]) if name in properties else None

    def _name(self, logical_id: str, name_property: str) -> str:
        return self._property(logical_id, name_property) or f"{self.stack_name}-{logical_id}"

    def _physical_id(self, logical_id: str, resource: Mapping[str, Any]) -> str:
        kind = resource.get("Type")
        if kind == "AWS::Kinesis::Stream":
            return self._name(logical_id, "Name")
        if kind == "AWS::SQS::Queue":
            return queue_url(self.endpoint_url, ACCOUNT_ID, self._name(logical_id, "QueueName"))
        if kind == "AWS::S3::Bucket":
            return self._name(logical_id, "BucketName")
        if kind == "AWS::SecretsManager::Secret":
            # Locally the name stands in for the ARN: Secrets Manager takes either as SecretId.
            return self._name(logical_id, "Name")
        if kind in {"AWS::Serverless::Function", "AWS::Lambda::Function"}:
            return self._name(logical_id, "FunctionName")
        if kind == "AWS::Logs::LogGroup":
            return self._name(logical_id, "LogGroupName")
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{self._name(logical_id, 'TopicName')}"
        if kind in {"AWS::Serverless::HttpApi", "AWS::ApiGatewayV2::Api"}:
            return LOCAL_API_ID
        if kind == "AWS::Cognito::UserPool":
            return LOCAL_USER_POOL_ID
        if kind == "AWS::Cognito::UserPoolClient":
            return LOCAL_USER_POOL_CLIENT_ID
        if kind == "AWS::IAM::Role":
            return f"{self.stack_name}-{logical_id}"
        if kind == "AWS::ECS::Cluster":
            return self._name(logical_id, "ClusterName")
        if kind == "AWS::ECS::TaskDefinition":
            family = self._name(logical_id, "Family")
            return (
                f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task-definition/{family}:{LOCAL_TASK_DEFINITION_REVISION}"
            )
        if kind in {"AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine"}:
            name_property = "Name" if kind == "AWS::Serverless::StateMachine" else "StateMachineName"
            name = self._name(logical_id, name_property)
            return f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{name}"
        if kind == "AWS::CloudWatch::Dashboard":
            return self._name(logical_id, "DashboardName")
        raise UnresolvedError(f"the id of {logical_id} ({kind}) exists only in AWS")

    def _get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise UnresolvedError(f"GetAtt of unknown {logical_id}")
        kind = resource.get("Type")
        arn_prefix = f"arn:aws:{{}}:{REGION}:{ACCOUNT_ID}:"
        if kind == "AWS::Kinesis::Stream" and attribute == "Arn":
            return arn_prefix.format("kinesis") + f"stream/{self._name(logical_id, 'Name')}"
        if kind == "AWS::SQS::Queue":
            queue_name = self._name(logical_id, "QueueName")
            by_attribute = {
                "Arn": arn_prefix.format("sqs") + queue_name,
                "QueueName": queue_name,
                "QueueUrl": queue_url(self.endpoint_url, ACCOUNT_ID, queue_name),
            }
            if attribute in by_attribute:
                return by_attribute[attribute]
        if kind == "AWS::S3::Bucket":
            bucket = self._name(logical_id, "BucketName")
            if attribute == "Arn":
                return f"arn:aws:s3:::{bucket}"
            if attribute in {"DomainName", "RegionalDomainName"}:
                return f"{bucket}.s3.amazonaws.com"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{self.stack_name}-{logical_id}"
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            name = self._name(logical_id, "LogGroupName")
            return arn_prefix.format("logs") + f"log-group:{name}:*"
        if kind in {"AWS::Serverless::Function", "AWS::Lambda::Function"} and attribute == "Arn":
            return arn_prefix.format("lambda") + f"function:{self._name(logical_id, 'FunctionName')}"
        if kind == "AWS::ECS::Cluster" and attribute == "Arn":
            return arn_prefix.format("ecs") + f"cluster/{self._name(logical_id, 'ClusterName')}"
        if kind == "AWS::SNS::Topic" and attribute in {"TopicArn", "TopicName"}:
            name = self._name(logical_id, "TopicName")
            return name if attribute == "TopicName" else arn_prefix.format("sns") + name
        if kind == "AWS::KMS::Key" and attribute == "Arn":
            return arn_prefix.format("kms") + "key/00000000-0000-0000-0000-000000000000"
        raise UnresolvedError(f"{logical_id}.{attribute} exists only in AWS")

    # -- functions --

    def _globals(self, section: str) -> dict[str, Any]:
        return dict((self.template.get("Globals") or {}).get(section) or {})

    def _function_properties(self, logical_id: str) -> dict[str, Any]:
        merged = self._globals("Function")
        own = dict(self.resources[logical_id].get("Properties") or {})
        for key, value in own.items():
            if key == "Environment":
                variables = dict((merged.get("Environment") or {}).get("Variables") or {})
                variables.update((value or {}).get("Variables") or {})
                merged["Environment"] = {"Variables": variables}
            elif key == "Layers":
                merged["Layers"] = list(merged.get("Layers") or []) + list(value or [])
            else:
                merged[key] = value
        return merged

    def function_ids(self) -> list[str]:
        return self.of_type(*FUNCTION_TYPES)

    def function(self, logical_id: str) -> FunctionSpec:
        if logical_id not in self.function_ids():
            known = ", ".join(sorted(self.function_ids())) or "none"
            raise UsageError(f"no function {logical_id!r} in {self.template_path.name} (functions: {known})")
        properties = self._function_properties(logical_id)
        code_uri = self.resolve(properties.get("CodeUri", "."))
        if not isinstance(code_uri, str):
            raise UsageError(f"{logical_id}: CodeUri must be a local directory to run it locally")
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        environment: dict[str, str | None] = {}
        for name, value in variables.items():
            try:
                environment[str(name)] = self.resolve_text(value)
            except UnresolvedError:
                environment[str(name)] = None
        role = properties.get("Role")
        role_arn = (
            self.resolve_text(role)
            if role is not None
            else f"arn:aws:iam::{ACCOUNT_ID}:role/{self.stack_name}-{logical_id}Role"
        )
        return FunctionSpec(
            logical_id=logical_id,
            function_name=self._name(logical_id, "FunctionName"),
            handler=self.resolve_text(properties.get("Handler", "app.lambda_handler")),
            code_dir=(self.base_dir / code_uri).resolve(),
            layer_dirs=tuple(self._layer_dir(layer) for layer in properties.get("Layers") or []),
            memory_mb=int(self.resolve_text(properties.get("MemorySize", 128))),
            timeout_s=int(self.resolve_text(properties.get("Timeout", 3))),
            runtime=self.resolve_text(properties.get("Runtime", "python3.12")),
            role_arn=role_arn,
            environment=environment,
        )

    def _layer_dir(self, layer: Any) -> Path:
        if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in self.resources:
            content = (self.resources[layer["Ref"]].get("Properties") or {}).get("ContentUri")
            if isinstance(content, str):
                directory = (self.base_dir / content).resolve()
                # A pre-built layer keeps its modules in python/, as /opt/python at runtime.
                return directory / "python" if (directory / "python").is_dir() else directory
        raise UsageError(f"layer {layer!r} is not a layer of this template; it cannot be loaded locally")

    def _events(self, logical_id: str, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        events = (self.resources[logical_id].get("Properties") or {}).get("Events") or {}
        return [
            (str(name), dict(event.get("Properties") or {}))
            for name, event in events.items()
            if event.get("Type") == event_type
        ]

    def kinesis_sources(self, logical_id: str | None = None) -> list[KinesisSource]:
        sources = []
        for function_id in [logical_id] if logical_id else self.function_ids():
            for _, props in self._events(function_id, "Kinesis"):
                stream_arn = self.resolve_text(props["Stream"])
                on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                    "Destination"
                )
                types = self.resolve(props.get("FunctionResponseTypes") or [])

                def number(name: str, default: int, props: dict[str, Any] = props) -> int:
                    return int(self.resolve_text(props.get(name, default)))

                sources.append(
                    KinesisSource(
                        function_id=function_id,
                        stream_name=stream_arn.rsplit("/", 1)[-1],
                        stream_arn=stream_arn,
                        starting_position=self.resolve_text(props.get("StartingPosition", "TRIM_HORIZON")),
                        batch_size=number("BatchSize", 100),
                        batching_window_s=number("MaximumBatchingWindowInSeconds", 0),
                        report_batch_item_failures="ReportBatchItemFailures" in types,
                        bisect_on_error=self.resolve_text(props.get("BisectBatchOnFunctionError", False))
                        == "true",
                        max_retry_attempts=number("MaximumRetryAttempts", -1),
                        max_record_age_s=number("MaximumRecordAgeInSeconds", -1),
                        on_failure_arn=self.resolve_text(on_failure) if on_failure is not None else None,
                        enabled=self.resolve_text(props.get("Enabled", True)) == "true",
                    )
                )
        return sources

    # -- state machines --

    def state_machine_ids(self) -> list[str]:
        return self.of_type(*STATE_MACHINE_TYPES)

    def state_machine(self, logical_id: str | None = None) -> StateMachineSpec:
        """A state machine of the template (the only one when no id is given) with its substitutions."""
        known = self.state_machine_ids()
        names = ", ".join(sorted(known)) or "none"
        if logical_id is None:
            if not known:
                raise UsageError(f"{self.template_path.name} has no state machine to run")
            if len(known) > 1:
                raise UsageError(f"{self.template_path.name} has several state machines ({names}); pick one")
            logical_id = known[0]
        if logical_id not in known:
            raise UsageError(f"no state machine {logical_id!r} in {self.template_path.name} ({names})")
        properties = self.resources[logical_id].get("Properties") or {}
        definition_uri = self.resolve(properties.get("DefinitionUri"))
        if not isinstance(definition_uri, str) or definition_uri.startswith("s3://"):
            raise UsageError(f"{logical_id}: DefinitionUri must be a local file to run it locally")
        substitutions: dict[str, str | None] = {}
        for name, value in (properties.get("DefinitionSubstitutions") or {}).items():
            try:
                substitutions[str(name)] = self.resolve_text(value)
            except UnresolvedError:
                substitutions[str(name)] = None
        return StateMachineSpec(
            logical_id=logical_id,
            name=self._name(logical_id, "Name"),
            definition_path=(self.base_dir / definition_uri).resolve(),
            substitutions=substitutions,
        )

    # -- the HTTP API --

    def routes(self) -> list[Route]:
        routes = []
        for function_id in self.function_ids():
            for _, props in self._events(function_id, "HttpApi"):
                api = self._api_properties(props.get("ApiId"))
                api_auth = api.get("Auth") or {}
                route_auth = props.get("Auth") or {}
                authorizer = route_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
                authorizer_name = None if authorizer in (None, PUBLIC) else str(authorizer)
                authorizer_type = PUBLIC
                issuer: str | None = None
                audience: tuple[str, ...] = ()
                if authorizer_name is not None:
                    authorizer_type = "JWT"
                    definition = (api_auth.get("Authorizers") or {}).get(authorizer_name) or {}
                    if "JwtConfiguration" not in definition:
                        authorizer_type = "AWS_IAM" if authorizer_name == "AWS_IAM" else "REQUEST"
                    else:
                        issuer, audience = self._jwt_configuration(definition["JwtConfiguration"])
                scopes = route_auth.get("AuthorizationScopes")
                if scopes is None and authorizer_name is not None:
                    definition = (api_auth.get("Authorizers") or {}).get(authorizer_name) or {}
                    scopes = definition.get("AuthorizationScopes")
                path = self.resolve_text(props["Path"]) if "Path" in props else "$default"
                method = self.resolve_text(props.get("Method", "ANY")).upper()
                routes.append(
                    Route(
                        method="ANY" if method in {"*", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method,
                        path=path,
                        function_id=function_id,
                        authorizer=authorizer_name,
                        authorizer_type=authorizer_type,
                        scopes=tuple(str(scope) for scope in self.resolve(scopes or [])),
                        issuer=issuer,
                        audience=audience,
                    )
                )
        return routes

    def _jwt_configuration(self, configuration: Any) -> tuple[str | None, tuple[str, ...]]:
        """A JwtConfiguration's issuer and audiences; (None, ()) where only AWS can resolve them."""
        try:
            resolved = self.resolve(configuration)
        except UnresolvedError:
            return None, ()
        issuer = resolved.get("issuer") if isinstance(resolved, dict) else None
        audience = resolved.get("audience") if isinstance(resolved, dict) else None
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        return (str(issuer) if issuer else None), tuple(str(a) for a in audiences if a)

    def jwt_authorizer(self) -> tuple[str, tuple[str, ...]]:
        """The issuer and audiences of the API's default JWT authorizer (what local tokens carry)."""
        for route in self.routes():
            if route.authorizer_type == "JWT" and route.issuer:
                return route.issuer, route.audience
        raise UsageError(f"{self.template_path.name} has no JWT authorizer with an issuer")

    def _api_properties(self, api_id: Any) -> dict[str, Any]:
        # Without ApiId, SAM attaches the route to its implicit API configured by Globals.HttpApi.
        globals_api = self._globals("HttpApi")
        if api_id is None:
            return globals_api
        logical_id = api_id.get("Ref") if isinstance(api_id, dict) else api_id
        resource = self.resources.get(str(logical_id))
        if resource is None:
            raise UsageError(f"HttpApi event refers to unknown API {logical_id!r}")
        return {**globals_api, **(resource.get("Properties") or {})}

    def http_api_cors(self) -> dict[str, Any] | None:
        """The CORS settings of the (first) HttpApi, as keyword arguments for ``apigw.Cors``."""
        for logical_id in self.of_type("AWS::Serverless::HttpApi"):
            properties = {**self._globals("HttpApi"), **(self.resources[logical_id].get("Properties") or {})}
            cors = properties.get("CorsConfiguration")
            if cors is None:
                continue
            if cors is True:
                return {"allow_origins": ("*",), "allow_headers": ("*",), "allow_methods": ("*",)}
            cors = self.resolve(cors)
            return {
                "allow_origins": tuple(cors.get("AllowOrigins") or ()),
                "allow_headers": tuple(cors.get("AllowHeaders") or ()),
                "allow_methods": tuple(cors.get("AllowMethods") or ()),
                "max_age": int(cors["MaxAge"]) if "MaxAge" in cors else None,
            }
        return None

    # -- names the local cloud creates --

    def local_resources(self) -> LocalResources:
        for required in (STREAM_ID, BUCKET_ID, DEAD_LETTER_QUEUE_ID, MONGODB_SECRET_ID, REDIS_AUTH_SECRET_ID):
            if not self.exists(required):
                raise UsageError(f"{self.template_path.name} has no {required}; the local cloud needs it")
        dead_letter_queue = self._name(DEAD_LETTER_QUEUE_ID, "QueueName")
        return LocalResources(
            stack_name=self.stack_name,
            region=REGION,
            account_id=ACCOUNT_ID,
            stream_name=self._name(STREAM_ID, "Name"),
            bucket_name=self._name(BUCKET_ID, "BucketName"),
            dead_letter_queue_name=dead_letter_queue,
            mongodb_secret_name=self._name(MONGODB_SECRET_ID, "Name"),
            redis_auth_secret_name=self._name(REDIS_AUTH_SECRET_ID, "Name"),
            dead_letter_bucket_name=(
                self._name(DEAD_LETTER_BUCKET_ID, "BucketName")
                if self.exists(DEAD_LETTER_BUCKET_ID)
                else None
            ),
            streams=tuple(self._name(i, "Name") for i in self.of_type("AWS::Kinesis::Stream")),
            buckets=tuple(self._name(i, "BucketName") for i in self.of_type("AWS::S3::Bucket")),
            queues=tuple(self._name(i, "QueueName") for i in self.of_type("AWS::SQS::Queue")),
            secrets=tuple(self._name(i, "Name") for i in self.of_type("AWS::SecretsManager::Secret")),
            topics=tuple(self._name(i, "TopicName") for i in self.of_type("AWS::SNS::Topic")),
            dead_letter_queue_url=(
                queue_url(self.endpoint_url, ACCOUNT_ID, dead_letter_queue) if self.endpoint_url else None
            ),
        )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(_text(item) for item in value)
    return str(value)


def _comparable(value: Any) -> Any:
    if isinstance(value, list):
        return [_text(item) for item in value]
    return _text(value)


# ---- the environment a function gets locally ----------------------------------------------------------

LOCAL_DEFAULTS: Mapping[str, str] = {
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "MONGODB_URI": "mongodb://127.0.0.1:27017/movierec",
}
"""Used when the template's value exists only in AWS and neither the shell nor cloud.json says."""


def _localise(
    variables: Mapping[str, str | None],
    cloud: LocalCloud,
    environ: Mapping[str, str],
    overrides: Sequence[Mapping[str, Any]],
) -> dict[str, str]:
    result: dict[str, str] = {}
    for name, value in variables.items():
        if value is not None:
            result[name] = value
        elif name in LOCAL_DEFAULTS:
            result[name] = LOCAL_DEFAULTS[name]
    declared = set(variables)
    # The local stand-ins replace what only AWS has: the cache, the database's URI, no Redis AUTH.
    if "REDIS_URL" in declared:
        result["REDIS_URL"] = cloud.redis_url or LOCAL_DEFAULTS["REDIS_URL"]
    result.pop("REDIS_AUTH_SECRET_ARN", None)
    if declared & {"MONGODB_URI", "MONGODB_SECRET_ARN"}:
        result["MONGODB_URI"] = cloud.mongodb_uri or LOCAL_DEFAULTS["MONGODB_URI"]
    for name in declared | {"MONGODB_URI"}:
        if name in environ and name in result:
            result[name] = environ[name]
    for section in overrides:
        for name, value in section.items():
            if value is None:
                result.pop(str(name), None)
            else:
                result[str(name)] = _text(value)
    result.update(
        {
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": cloud.aws_endpoint_url,
            "AWS_ACCESS_KEY_ID": environ.get("AWS_ACCESS_KEY_ID", "test"),
            "AWS_SECRET_ACCESS_KEY": environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        }
    )
    return result


def local_environment(
    spec: FunctionSpec,
    cloud: LocalCloud,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The variables a function sees locally, in ``sam local``'s order of precedence.

    Template values (Globals merged) < local-cloud locations < the shell, for names the template
    declares < ``--env-vars`` (``{"Parameters": {...}, "<LogicalId>": {...}}``) < the Lambda runtime's own.
    """
    sections = [(overrides or {}).get(name) or {} for name in ("Parameters", spec.logical_id)]
    result = _localise(spec.environment, cloud, os.environ if environ is None else environ, sections)
    result.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": spec.function_name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.function_name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
            # What `sam local` sets; Powertools' Tracer turns itself off on seeing it (no X-Ray daemon here).
            "AWS_SAM_LOCAL": "true",
        }
    )
    return result


def training_environment(
    stack: Stack, cloud: LocalCloud, *, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The training container's variables and default command, localised like a function's.

    They come from the template's ``TrainingTaskDefinition`` when it has one; otherwise from the
    resources every training run needs (the artifact bucket and the stores).
    """
    variables: dict[str, str | None] = {}
    command: list[str] = []
    if stack.exists(TRAINING_TASK_ID):
        properties = stack.resources[TRAINING_TASK_ID].get("Properties") or {}
        containers = properties.get("ContainerDefinitions") or []
        container = next((c for c in containers if c.get("Name") == TRAINING_CONTAINER), containers[0])
        for item in container.get("Environment") or []:
            try:
                variables[str(item["Name"])] = stack.resolve_text(item["Value"])
            except UnresolvedError:
                variables[str(item["Name"])] = None
        for item in container.get("Secrets") or []:
            variables[str(item["Name"])] = None  # injected by ECS from Secrets Manager
        command = [str(part) for part in stack.resolve(container.get("Command") or [])]
    else:
        resources = stack.local_resources()
        variables = {
            "ARTIFACT_BUCKET": resources.bucket_name,
            "MONGODB_SECRET_ARN": resources.mongodb_secret_name,
            "REDIS_URL": None,
        }
    result = _localise(variables, cloud, os.environ if environ is None else environ, [])
    result.setdefault("POWERTOOLS_SERVICE_NAME", "training")
    return result, command


def read_env_vars_file(path: Path) -> dict[str, Any]:
    """``--env-vars`` in sam's format; UsageError when missing or malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read env-vars file {path}: {error.strerror}") from error
    except ValueError as error:
        raise UsageError(f"env-vars file {path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UsageError(f'env-vars file {path} must look like {{"Parameters": {{"NAME": "value"}}}}')
    return data
