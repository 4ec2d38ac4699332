"""The environment a function or the training task gets locally, and where the local cloud listens.

Environment variables whose template value exists only in AWS take a local default or a value from
the local cloud (``.local/cloud.json``, written by ``python -m infra.local up``, or the shell).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.local.errors import UsageError
from infra.local.template.intrinsics import UnresolvedError, scalar_text
from infra.local.template.names import DEFAULT_ENDPOINT_URL, REGION, TRAINING_CONTAINER, TRAINING_TASK_ID
from infra.local.template.specs import FunctionSpec
from infra.local.template.stack import Stack


@dataclass(frozen=True)
class LocalCloud:
    """Where the local stand-ins listen. The shell's variables win over ``.local/cloud.json``."""

    aws_endpoint_url: str = DEFAULT_ENDPOINT_URL
    redis_url: str | None = None
    mongodb_uri: str | None = None
    pushgateway_url: str | None = None

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
            pushgateway_url=pick("pushgateway_url"),
        )


def state_dir_for(template_path: Path) -> Path:
    """``.local/`` next to the template: checkpoints, cloud.json and other local state live there."""
    return template_path.resolve().parent / ".local"


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
    if result.get("EXPERIMENTS_SOURCE") == "appconfig":  # moto has no AppConfig Data API: S3 stands in
        result["EXPERIMENTS_SOURCE"] = "s3"
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
                result[str(name)] = scalar_text(value)
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
    if cloud.pushgateway_url:  # `make up` started one: the run pushes its metrics there
        result.setdefault("PUSHGATEWAY_URL", cloud.pushgateway_url)
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
