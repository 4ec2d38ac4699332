"""Task integrations served locally: ``ecs:runTask.sync`` as a local process, other services via boto3."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from infra.local.errors import UsageError
from infra.local.statemachine.errors import StatesError
from infra.local.template import ACCOUNT_ID, REGION, TRAINING_CONTAINER

Log = Callable[[str], None]


class TaskRunner(Protocol):
    def __call__(self, parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        """Run the ECS task described by RunTask ``parameters``; return the stopped task's description."""
        ...


class ServiceCaller(Protocol):
    def __call__(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        """Call ``service``'s API ``action`` (camelCase, as in the Resource) and return its response."""
        ...


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LocalEcsTask:
    """``ecs:runTask.sync`` locally: the container's command as a child process, waited for.

    The process gets ``environment`` (the training task's, localised) plus the override's
    ``Environment``; ``entrypoint`` stands in for the image's ENTRYPOINT, ``default_command`` for the task
    definition's Command. Its stdout and stderr go to ``output`` (our stderr by default).
    """

    def __init__(
        self,
        environment: Mapping[str, str],
        *,
        entrypoint: Sequence[str],
        cwd: Path,
        default_command: Sequence[str] = (),
        container: str = TRAINING_CONTAINER,
        task_definition: str | None = None,
        log: Log = lambda _line: None,
        output: int | IO[Any] | None = 2,
    ) -> None:
        self.environment = dict(environment)
        self.entrypoint = list(entrypoint)
        self.cwd = cwd
        self.default_command = list(default_command)
        self.container = container
        self.task_definition = task_definition
        self.log = log
        self.output = output
        self._count = 0

    def __call__(self, parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        task_definition = str(parameters.get("TaskDefinition", ""))
        if self.task_definition is not None and task_definition != self.task_definition:
            raise UsageError(
                f"the definition runs task definition {task_definition}; only {self.task_definition} "
                "(the template's training task) runs locally"
            )
        overrides = [
            item
            for item in (parameters.get("Overrides") or {}).get("ContainerOverrides") or []
            if item.get("Name") == self.container
        ]
        override = overrides[0] if overrides else {}
        command = [str(part) for part in override.get("Command") or self.default_command]
        environment = dict(self.environment)
        environment.update({str(i["Name"]): str(i["Value"]) for i in override.get("Environment") or []})
        self._count += 1
        cluster = str(parameters.get("Cluster", "local"))
        task_arn = (
            f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/{cluster.rsplit('/', 1)[-1]}/local{self._count:04d}"
        )
        argv = [*self.entrypoint, *command]
        self.log(f"  $ {' '.join(argv)}")
        started = now_text()
        container: dict[str, Any] = {"Name": self.container, "TaskArn": task_arn, "LastStatus": "STOPPED"}
        task: dict[str, Any] = {
            "TaskArn": task_arn,
            "ClusterArn": cluster,
            "TaskDefinitionArn": task_definition,
            "LaunchType": parameters.get("LaunchType", "FARGATE"),
            "LastStatus": "STOPPED",
            "DesiredStatus": "STOPPED",
            "StartedAt": started,
            "Overrides": parameters.get("Overrides") or {},
            "Containers": [container],
        }
        try:
            completed = subprocess.run(
                argv,
                cwd=self.cwd,
                env=environment,
                check=False,
                timeout=timeout_s,
                stdout=self.output,
                stderr=self.output,
            )
        except subprocess.TimeoutExpired as error:
            raise StatesError("States.Timeout", f"the task ran longer than {timeout_s:g} s") from error
        except OSError as error:
            container["Reason"] = f"CannotStartContainerError: {error}"
            task.update(
                StopCode="TaskFailedToStart",
                StoppedReason=f"CannotStartContainerError: {error}",
                StoppedAt=now_text(),
            )
            raise StatesError("States.TaskFailed", json.dumps(task)) from error
        container["ExitCode"] = completed.returncode
        self.log(f"  exit status {completed.returncode}")
        task.update(
            StopCode="EssentialContainerExited",
            StoppedReason="Essential container in task exited",
            StoppedAt=now_text(),
        )
        if completed.returncode != 0:
            raise StatesError("States.TaskFailed", json.dumps(task))
        return task


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


ERROR_PREFIXES = {"sns": "SNS", "sqs": "SQS", "s3": "S3", "ecs": "ECS", "cloudwatch": "CloudWatch"}
"""How Step Functions names a service's errors (``SNS.NotFoundException``)."""


class Boto3Calls:
    """Service integrations against an endpoint (the local cloud): ``client.put_metric_data(**params)``."""

    def __init__(self, client_factory: Callable[[str], Any]) -> None:
        self.client_factory = client_factory
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self.client_factory(service)
        method = getattr(client, xform_name(action), None)
        if method is None:
            raise StatesError("States.TaskFailed", f"{service} has no action {action}")
        try:
            response = method(**parameters)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", "Unknown"))
            prefix = ERROR_PREFIXES.get(service, service.capitalize())
            raise StatesError(f"{prefix}.{code}", str(error)) from error
        except BotoCoreError as error:
            raise StatesError("States.TaskFailed", f"{service}.{action}: {error}") from error
        response = dict(response or {})
        response.pop("ResponseMetadata", None)
        return _jsonable(response)
