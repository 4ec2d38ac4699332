"""Runs a Step Functions definition (Amazon States Language, JSONPath) locally, state by state.

``python -m infra.local run-job pipeline`` executes the template's training state machine
(``infra/statemachine/training.asl.json``, with its ``DefinitionSubstitutions`` resolved for the local
stack) the way Step Functions would: ``Task``, ``Pass``, ``Choice``, ``Wait``, ``Succeed`` and ``Fail``
states; ``InputPath``, ``Parameters``, ``ResultSelector``, ``ResultPath`` and ``OutputPath``; ``Retry``
(with backoff, capped locally) and ``Catch``; the context object (``$$.Execution.Name`` ...) and the
intrinsic functions the definition uses. Task states are served by local stand-ins:

- ``arn:aws:states:::ecs:runTask.sync`` runs the container's command (its ``ContainerOverrides``
  ``Command``, else the task definition's) as a local process, ``python -m training_job ...``, with the
  training task's environment. A non-zero exit is ``States.TaskFailed`` whose ``Cause`` is the stopped
  task's description, as in AWS.
- ``arn:aws:states:::sns:publish`` and ``arn:aws:states:::aws-sdk:SERVICE:ACTION`` call the service on
  the local cloud (``AWS_ENDPOINT_URL``) with boto3.

``Parallel`` and ``Map`` states, JSONata and ``.waitForTaskToken`` are not emulated: such a definition is
refused before anything runs. docs/local-runner.md lists the other differences.

Modules: ``definition`` (loading, substitutions, what is emulated), ``paths``, ``intrinsics``,
``choice``, ``tasks`` (the local integrations) and ``execution`` (the interpreter). The names below
are the interface.
"""

from infra.local.statemachine.choice import choice_matches
from infra.local.statemachine.definition import (
    DEFAULT_MAX_RETRY_DELAY_S,
    load_definition,
    substitute,
    validate,
)
from infra.local.statemachine.errors import PathNotFoundError, StatesError
from infra.local.statemachine.execution import ExecutionResult, LocalExecution, StateRecord
from infra.local.statemachine.intrinsics import apply_template, evaluate
from infra.local.statemachine.paths import read_path, write_result
from infra.local.statemachine.tasks import Boto3Calls, LocalEcsTask, ServiceCaller, TaskRunner

__all__ = [
    "DEFAULT_MAX_RETRY_DELAY_S",
    "Boto3Calls",
    "ExecutionResult",
    "LocalEcsTask",
    "LocalExecution",
    "PathNotFoundError",
    "ServiceCaller",
    "StateRecord",
    "StatesError",
    "TaskRunner",
    "apply_template",
    "choice_matches",
    "evaluate",
    "load_definition",
    "read_path",
    "substitute",
    "validate",
    "write_result",
]
