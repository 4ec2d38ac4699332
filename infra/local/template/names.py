"""The local stack's fixed names: region, account, the logical ids the local cloud relies on."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
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


def queue_url(endpoint_url: str | None, account_id: str, queue_name: str, region: str = REGION) -> str:
    base = endpoint_url.rstrip("/") if endpoint_url else f"https://sqs.{region}.amazonaws.com"
    return f"{base}/{account_id}/{queue_name}"
