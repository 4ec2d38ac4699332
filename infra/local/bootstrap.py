"""Create the template's stream, buckets, queues, secrets and topics on moto or LocalStack, idempotently.

Names come from ``template.yaml`` resolved for the local stack, so local code finds the same names
that AWS would give it. Running it twice changes nothing (an explicit secret value is re-written).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.errors import UsageError
from infra.local.template import (
    DEFAULT_TEMPLATE,
    LOCAL_DEFAULTS,
    MONGODB_SECRET_ID,
    REDIS_AUTH_SECRET_ID,
    REGION,
    STACK_NAME,
    LocalResources,
    Stack,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

STREAM_ACTIVE_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.1
LOCAL_REDIS_AUTH_TOKEN = "local-redis-auth-token-not-a-secret"


def aws_client(service: str, endpoint_url: str) -> Any:
    """A client for the local endpoint; dummy credentials unless the shell has some."""
    return boto3.session.Session().client(  # type: ignore[call-overload]
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10),
    )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def wait_until_active(
    kinesis: KinesisClient, stream_name: str, timeout_s: float = STREAM_ACTIVE_TIMEOUT_S
) -> None:
    """Poll DescribeStreamSummary until the stream is ACTIVE (LocalStack takes a moment; moto none)."""
    deadline = time.monotonic() + timeout_s
    while True:
        summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise UsageError(
                f"stream {stream_name} is still {summary['StreamStatus']} after {timeout_s:.0f} s"
            )
        time.sleep(POLL_INTERVAL_S)


def _create_stream(kinesis: KinesisClient, stream_name: str, properties: Mapping[str, Any]) -> None:
    try:
        if "ShardCount" in properties:
            kinesis.create_stream(StreamName=stream_name, ShardCount=int(properties["ShardCount"]))
        else:
            kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise
    wait_until_active(kinesis, stream_name)


def _create_bucket(s3: Any, bucket: str) -> None:
    try:
        s3.create_bucket(Bucket=bucket)  # us-east-1 takes no LocationConstraint
    except ClientError as error:
        if _error_code(error) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
            raise
    # As in the template: superseded artifacts stay recoverable.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})


def _put_secret(secretsmanager: Any, name: str, value: str | None) -> None:
    try:
        secretsmanager.create_secret(Name=name, SecretString=value or secrets.token_urlsafe(32))
    except ClientError as error:
        if _error_code(error) != "ResourceExistsException":
            raise
        if value is not None:
            secretsmanager.put_secret_value(SecretId=name, SecretString=value)


def bootstrap(
    endpoint_url: str,
    template_path: Path = DEFAULT_TEMPLATE,
    *,
    stack_name: str = STACK_NAME,
    secret_values: Mapping[str, str] | None = None,
) -> LocalResources:
    """Create what the template names; returns the names (and the dead-letter queue's local URL).

    ``secret_values`` maps a secret's logical id (``MongoDbSecret``) or name to its local value; the
    MongoDB secret defaults to ``MONGODB_URI`` or the local default, so code that reads the secret
    reaches the local database.
    """
    stack = Stack.load(template_path, stack_name=stack_name, endpoint_url=endpoint_url)
    resources = stack.local_resources()
    values = dict(secret_values or {})
    defaults = {
        MONGODB_SECRET_ID: os.environ.get("MONGODB_URI") or LOCAL_DEFAULTS["MONGODB_URI"],
        REDIS_AUTH_SECRET_ID: LOCAL_REDIS_AUTH_TOKEN,
    }
    try:
        kinesis = aws_client("kinesis", endpoint_url)
        for logical_id in stack.of_type("AWS::Kinesis::Stream"):
            properties = stack.resources[logical_id].get("Properties") or {}
            _create_stream(kinesis, stack.resolve_text(properties.get("Name", logical_id)), properties)
        s3 = aws_client("s3", endpoint_url)
        for bucket in resources.buckets:
            _create_bucket(s3, bucket)
        sqs = aws_client("sqs", endpoint_url)
        urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"] for name in resources.queues}
        secretsmanager = aws_client("secretsmanager", endpoint_url)
        for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
            name = stack.resolve_text(
                (stack.resources[logical_id].get("Properties") or {}).get("Name", logical_id)
            )
            value = values.get(logical_id) or values.get(name)
            if value is None and logical_id in defaults:
                # Keep a value someone already put there; only a missing secret gets the default.
                value = None if _secret_exists(secretsmanager, name) else defaults[logical_id]
            _put_secret(secretsmanager, name, value)
        # The training pipeline's notifications (run-job pipeline publishes them); CreateTopic is idempotent.
        sns = aws_client("sns", endpoint_url)
        for topic in resources.topics:
            sns.create_topic(Name=topic)
    except (ClientError, boto3.exceptions.Boto3Error) as error:
        raise UsageError(f"bootstrapping {endpoint_url} failed: {error}") from error
    except Exception as error:
        if type(error).__module__.startswith(("botocore", "urllib3")):
            raise UsageError(f"cannot reach {endpoint_url}: {error}") from error
        raise
    return replace(resources, dead_letter_queue_url=urls.get(resources.dead_letter_queue_name))


def _secret_exists(secretsmanager: Any, name: str) -> bool:
    try:
        secretsmanager.describe_secret(SecretId=name)
    except ClientError as error:
        if _error_code(error) == "ResourceNotFoundException":
            return False
        raise
    return True
