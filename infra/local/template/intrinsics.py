"""Intrinsic functions, parameters and conditions, evaluated for a local stack.

What cannot be known locally (an ElastiCache endpoint, a KMS key) raises :class:`UnresolvedError`;
a resource's ``!Ref`` is the physical id AWS would give it for the stack's name.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

from infra.local.template.loader import load_template
from infra.local.template.names import (
    ACCOUNT_ID,
    DEFAULT_TEMPLATE,
    LOCAL_API_ID,
    LOCAL_TASK_DEFINITION_REVISION,
    LOCAL_USER_POOL_CLIENT_ID,
    LOCAL_USER_POOL_ID,
    REGION,
    STACK_NAME,
    queue_url,
)


class UnresolvedError(Exception):
    """A value that exists only in AWS (an endpoint, a generated id) or a template error."""


class _NoValue:
    """``AWS::NoValue``: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class Resolver:
    """A template's parameters, conditions and intrinsic functions, evaluated for one local stack."""

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
    ) -> Self:
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
                return bool(comparable(left) == comparable(right))
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
            return str(separator).join(scalar_text(value) for value in values)
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
                return scalar_text(self.resolve(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return scalar_text(self._get_att(logical_id, attribute))
            return scalar_text(self._ref(name))

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


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(scalar_text(item) for item in value)
    return str(value)


def comparable(value: Any) -> Any:
    if isinstance(value, list):
        return [scalar_text(item) for item in value]
    return scalar_text(value)
