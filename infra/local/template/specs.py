"""What the runner consumes from a template: functions, routes, stream sources, state machines, names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.local.template.names import ACCOUNT_ID, REGION


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
