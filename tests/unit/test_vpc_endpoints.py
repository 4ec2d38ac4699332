"""In a VPC the functions and the training task reach every AWS API they call without a NAT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.local.template import load_template

TEMPLATE: dict[str, Any] = load_template(Path(__file__).resolve().parents[2] / "template.yaml")

# What the code calls: Secrets Manager (stores.secrets), SQS (dead letters), S3 (artifacts, dead
# letters, ECR layers), SNS and Step Functions (the pipeline), CloudWatch Logs/Metrics, X-Ray, ECR.
NEEDED = {"secretsmanager", "sqs", "s3", "sns", "logs", "monitoring", "xray", "ecr.api", "ecr.dkr", "states"}


def endpoints() -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in TEMPLATE["Resources"].items()
        if resource["Type"] == "AWS::EC2::VPCEndpoint"
    }


def service_of(resource: dict[str, Any]) -> str:
    name = resource["Properties"]["ServiceName"]
    text = name["Fn::Sub"] if isinstance(name, dict) else name
    return str(text).rsplit("}.", 1)[-1]


def test_every_api_the_code_calls_has_an_endpoint() -> None:
    assert {service_of(r) for r in endpoints().values()} == NEEDED


def test_endpoints_exist_only_in_a_vpc_that_wants_them() -> None:
    for resource in endpoints().values():
        assert resource["Condition"] in {"CreateEndpoints", "CreateS3Endpoint"}


def test_interface_endpoints_admit_only_the_functions_and_the_task() -> None:
    group = TEMPLATE["Resources"]["EndpointSecurityGroup"]["Properties"]
    assert [rule["SourceSecurityGroupId"] for rule in group["SecurityGroupIngress"]] == [
        {"Ref": "FunctionSecurityGroup"}
    ]
    for resource in endpoints().values():
        if resource["Properties"]["VpcEndpointType"] == "Interface":
            assert resource["Properties"]["PrivateDnsEnabled"] is True
