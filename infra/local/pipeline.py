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
"""

from __future__ import annotations

import json
import operator
import random
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from botocore import xform_name
from botocore.exceptions import BotoCoreError, ClientError

from infra.local.errors import UsageError
from infra.local.template import ACCOUNT_ID, REGION, TRAINING_CONTAINER, StateMachineSpec

ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
OPTIMISED_SERVICES = {"arn:aws:states:::sns:publish": ("sns", "publish")}
AWS_SDK_PREFIX = "arn:aws:states:::aws-sdk:"
SUPPORTED_STATES = frozenset({"Task", "Pass", "Choice", "Wait", "Succeed", "Fail"})
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
DEFAULT_MAX_RETRY_DELAY_S = 1.0

Log = Callable[[str], None]


class StatesError(Exception):
    """An error in the States Language sense: a name (``States.TaskFailed``) and a cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class PathNotFoundError(StatesError):
    def __init__(self, path: str) -> None:
        super().__init__("States.Runtime", f"the JSONPath {path} could not be found in the input")


# ---- definitions -----------------------------------------------------------------------------------------

_SUBSTITUTION = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def substitute(text: str, substitutions: Mapping[str, str | None]) -> str:
    """``DefinitionSubstitutions`` as CloudFormation applies them; values only AWS knows become a marker."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            return match.group(0)
        value = substitutions[name]
        return value if value is not None else f"<{name}: only in AWS>"

    return _SUBSTITUTION.sub(replace, text)


def load_definition(spec: StateMachineSpec) -> dict[str, Any]:
    """The state machine's definition file, substitutions applied, parsed and checked."""
    try:
        text = spec.definition_path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read {spec.definition_path}: {error.strerror}") from error
    try:
        definition = json.loads(substitute(text, spec.substitutions))
    except ValueError as error:
        raise UsageError(f"{spec.definition_path} is not valid JSON: {error}") from error
    validate(definition)
    return dict(definition)


def _targets(state: Mapping[str, Any]) -> Iterator[str]:
    if "Next" in state:
        yield str(state["Next"])
    if "Default" in state:
        yield str(state["Default"])
    for rule in state.get("Choices") or []:
        yield str(rule.get("Next"))
    for catcher in state.get("Catch") or []:
        yield str(catcher.get("Next"))


def validate(definition: Any) -> None:
    """Refuse, before anything runs, what is malformed or not emulated locally."""
    if not isinstance(definition, dict) or not isinstance(definition.get("States"), dict):
        raise UsageError("not a state machine definition: no States")
    if definition.get("QueryLanguage", "JSONPath") != "JSONPath":
        raise UsageError("only JSONPath definitions run locally (not JSONata)")
    states: dict[str, Any] = definition["States"]
    if definition.get("StartAt") not in states:
        raise UsageError(f"StartAt {definition.get('StartAt')!r} is not a state")
    for name, state in states.items():
        kind = state.get("Type")
        if kind not in SUPPORTED_STATES:
            raise UsageError(f"state {name}: {kind} states are not emulated locally")
        if state.get("QueryLanguage", "JSONPath") != "JSONPath":
            raise UsageError(f"state {name}: only JSONPath runs locally (not JSONata)")
        for target in _targets(state):
            if target not in states:
                raise UsageError(f"state {name} goes to {target!r}, which is not a state")
        if kind in {"Task", "Pass", "Wait"} and "Next" not in state and not state.get("End"):
            raise UsageError(f"state {name} has neither Next nor End")
        if kind == "Choice" and not state.get("Choices"):
            raise UsageError(f"state {name}: a Choice needs Choices")
        for rule in state.get("Choices") or []:
            _check_rule(rule, f"state {name}")
        if kind == "Wait" and ("Timestamp" in state or "TimestampPath" in state):
            raise UsageError(f"state {name}: Wait until a timestamp is not emulated locally")
        for key in ("InputPath", "OutputPath", "ResultPath"):
            if state.get(key) is not None:
                parse_path(str(state[key]))
        if kind == "Task":
            _integration(str(state.get("Resource", "")), name)
        for key in ("Parameters", "ResultSelector"):
            if key in state:
                _check_template(state[key], f"state {name} {key}")


def _integration(resource: str, state_name: str) -> tuple[str, str, str]:
    """(kind, service, action) of a Task's Resource: ("ecs", ...) or ("aws", service, action)."""
    if resource == ECS_RUN_TASK_SYNC:
        return "ecs", "ecs", "runTask"
    if resource in OPTIMISED_SERVICES:
        return ("aws", *OPTIMISED_SERVICES[resource])
    if resource.startswith(AWS_SDK_PREFIX):
        service, _, action = resource.removeprefix(AWS_SDK_PREFIX).partition(":")
        if service and action and "." not in action:
            return "aws", service, action
    raise UsageError(f"state {state_name}: {resource or 'a Task without Resource'} is not emulated locally")


def _check_rule(rule: Mapping[str, Any], where: str) -> None:
    nested = rule.get("And") or rule.get("Or") or ([rule["Not"]] if "Not" in rule else None)
    if nested is not None:
        for inner in nested:
            _check_rule(inner, where)
        return
    parse_path(str(rule.get("Variable", "")))
    tests = {"IsPresent", "IsNull", "IsNumeric", "IsString", "IsBoolean", "IsTimestamp", "StringMatches"}
    known = tests | COMPARISON_OPERATORS | {f"{name}Path" for name in COMPARISON_OPERATORS}
    if not set(rule) & known:
        raise UsageError(f"{where}: Choice rule {dict(rule)} uses an operator that is not emulated locally")


def _check_template(template: Any, where: str) -> None:
    if isinstance(template, dict):
        for key, value in template.items():
            if str(key).endswith(".$"):
                if not isinstance(value, str):
                    raise UsageError(f"{where}: {key} must be a path or an intrinsic function")
                if value.startswith("States."):
                    _IntrinsicParser(value).parse()
                else:
                    parse_path(value)
            else:
                _check_template(value, where)
    elif isinstance(template, list):
        for item in template:
            _check_template(item, where)


# ---- reference paths ($.a.b[0], $$.Execution.Name) -------------------------------------------------------

_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]|\['([^']*)'\]")


def parse_path(path: str) -> tuple[str, list[str | int]]:
    """A reference path's root (``$`` or ``$$``) and its steps; UsageError for what is not one."""
    root = "$$" if path.startswith("$$") else "$" if path.startswith("$") else ""
    if not root:
        raise UsageError(f"{path!r} is not a JSONPath")
    steps: list[str | int] = []
    position = len(root)
    while position < len(path):
        match = _PATH_STEP.match(path, position)
        if match is None:
            raise UsageError(f"{path!r}: only reference paths ($.a.b[0]) are emulated locally")
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else (name if name is not None else quoted))
        position = match.end()
    return root, steps


def read_path(data: Any, context: Any, path: str) -> Any:
    root, steps = parse_path(path)
    value = context if root == "$$" else data
    for step in steps:
        found = (isinstance(step, int) and isinstance(value, list) and 0 <= step < len(value)) or (
            isinstance(step, str) and isinstance(value, dict) and step in value
        )
        if not found:
            raise PathNotFoundError(path)
        value = value[step]
    return value


def path_exists(data: Any, context: Any, path: str) -> bool:
    try:
        read_path(data, context, path)
    except PathNotFoundError:
        return False
    return True


def write_result(data: Any, result_path: str | None, result: Any) -> Any:
    """Apply ``ResultPath``: ``$`` replaces the input, ``$.a.b`` sets (creating objects), None discards."""
    if result_path is None:
        return data
    root, steps = parse_path(result_path)
    if root != "$" or any(isinstance(step, int) for step in steps):
        raise StatesError("States.ResultPathMatchFailure", f"cannot write a result to {result_path}")
    if not steps:
        return result
    if not isinstance(data, dict):
        raise StatesError("States.ResultPathMatchFailure", f"{result_path}: the input is not an object")
    output = json.loads(json.dumps(data))
    target = output
    for step in steps[:-1]:
        child = target.get(step)
        if child is None:
            child = target[step] = {}
        if not isinstance(child, dict):
            raise StatesError("States.ResultPathMatchFailure", f"{result_path}: {step} is not an object")
        target = child
    target[steps[-1]] = result
    return output


# ---- intrinsic functions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Call:
    name: str
    args: list[Any]


@dataclass(frozen=True)
class _PathArg:
    path: str


@dataclass(frozen=True)
class _Text:
    """A string literal; ``raw`` keeps ``\\{`` and ``\\}``, which States.Format reads as literal braces."""

    raw: str

    @property
    def value(self) -> str:
        return self.raw.replace("\\{", "{").replace("\\}", "}")


class _IntrinsicParser:
    """``States.Format('run {}', $$.Execution.Name)`` and friends, nested calls included."""

    FUNCTIONS = frozenset(
        {
            "States.Array",
            "States.Format",
            "States.StringToJson",
            "States.JsonToString",
            "States.ArrayLength",
            "States.MathAdd",
            "States.UUID",
        }
    )

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def parse(self) -> _Call:
        call = self._call()
        self._space()
        if self.position != len(self.text):
            raise self._error("unexpected text after the call")
        return call

    def _error(self, message: str) -> UsageError:
        return UsageError(f"intrinsic function {self.text!r}: {message} at {self.position}")

    def _space(self) -> None:
        while self.position < len(self.text) and self.text[self.position].isspace():
            self.position += 1

    def _call(self) -> _Call:
        self._space()
        match = re.compile(r"States\.[A-Za-z]+").match(self.text, self.position)
        if match is None:
            raise self._error("expected a States.* function")
        name = match.group(0)
        if name not in self.FUNCTIONS:
            raise self._error(f"{name} is not emulated locally")
        self.position = match.end()
        self._space()
        if self.text[self.position : self.position + 1] != "(":
            raise self._error("expected (")
        self.position += 1
        args: list[Any] = []
        self._space()
        if self.text[self.position : self.position + 1] == ")":
            self.position += 1
            return _Call(name, args)
        while True:
            args.append(self._argument())
            self._space()
            separator = self.text[self.position : self.position + 1]
            self.position += 1
            if separator == ")":
                return _Call(name, args)
            if separator != ",":
                raise self._error("expected , or )")

    def _argument(self) -> Any:
        self._space()
        rest = self.text[self.position :]
        if rest.startswith("'"):
            return self._string()
        if rest.startswith("States."):
            return self._call()
        if rest.startswith("$"):
            return _PathArg(self._path())
        match = re.compile(r"-?\d+(\.\d+)?|null|true|false").match(self.text, self.position)
        if match is None:
            raise self._error("expected a string, a number, a path or a call")
        self.position = match.end()
        return json.loads(match.group(0))

    def _string(self) -> _Text:
        self.position += 1
        chars: list[str] = []
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == "\\" and self.position + 1 < len(self.text):
                escaped = self.text[self.position + 1]
                chars.append("\\" + escaped if escaped in "{}" else escaped)
                self.position += 2
                continue
            if char == "'":
                self.position += 1
                return _Text("".join(chars))
            chars.append(char)
            self.position += 1
        raise self._error("unterminated string")

    def _path(self) -> str:
        start = self.position
        depth = 0
        quoted = False
        while self.position < len(self.text):
            char = self.text[self.position]
            if char == "'":
                quoted = not quoted
            elif not quoted and char == "[":
                depth += 1
            elif not quoted and char == "]":
                depth -= 1
            elif not quoted and depth == 0 and (char in ",)" or char.isspace()):
                break
            self.position += 1
        path = self.text[start : self.position]
        parse_path(path)
        return path


def _format_argument(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    raise StatesError("States.IntrinsicFailure", "States.Format takes strings, numbers, booleans or null")


def _argument_value(arg: Any, data: Any, context: Any) -> Any:
    if isinstance(arg, _Call):
        return _evaluate_call(arg, data, context)
    if isinstance(arg, _PathArg):
        return read_path(data, context, arg.path)
    if isinstance(arg, _Text):
        return arg.value
    return arg


def _format(call: _Call, data: Any, context: Any) -> str:
    template = call.args[0] if call.args else None
    if not isinstance(template, _Text):
        raise StatesError("States.IntrinsicFailure", "States.Format needs a template string")
    pieces = re.split(r"(?<!\\)\{\}", template.raw)
    values = [_argument_value(arg, data, context) for arg in call.args[1:]]
    if len(pieces) - 1 != len(values):
        raise StatesError("States.IntrinsicFailure", "States.Format: placeholders and arguments differ")
    text = _Text(pieces[0]).value
    for piece, value in zip(pieces[1:], values, strict=True):
        text += _format_argument(value) + _Text(piece).value
    return text


def _evaluate_call(call: _Call, data: Any, context: Any) -> Any:
    if call.name == "States.Format":
        return _format(call, data, context)
    args = [_argument_value(arg, data, context) for arg in call.args]
    if call.name == "States.Array":
        return args
    if call.name == "States.StringToJson":
        if len(args) != 1 or not isinstance(args[0], str):
            raise StatesError("States.IntrinsicFailure", "States.StringToJson takes one string")
        try:
            return json.loads(args[0])
        except ValueError as error:
            raise StatesError("States.IntrinsicFailure", f"States.StringToJson: {error}") from error
    if call.name == "States.JsonToString":
        return json.dumps(args[0] if args else None, separators=(",", ":"))
    if call.name == "States.ArrayLength":
        if len(args) != 1 or not isinstance(args[0], list):
            raise StatesError("States.IntrinsicFailure", "States.ArrayLength takes one array")
        return len(args[0])
    if call.name == "States.MathAdd":
        if len(args) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            raise StatesError("States.IntrinsicFailure", "States.MathAdd takes two integers")
        return args[0] + args[1]
    return str(uuid.uuid4())  # States.UUID


def evaluate(value: str, data: Any, context: Any) -> Any:
    """The value of a ``"Key.$"`` field: a path or an intrinsic function."""
    if value.startswith("States."):
        return _evaluate_call(_IntrinsicParser(value).parse(), data, context)
    return read_path(data, context, value)


def apply_template(template: Any, data: Any, context: Any) -> Any:
    """``Parameters`` / ``ResultSelector``: keys ending in ``.$`` take their value from a path or a call."""
    if isinstance(template, dict):
        output: dict[str, Any] = {}
        for key, value in template.items():
            if str(key).endswith(".$"):
                output[str(key)[:-2]] = evaluate(str(value), data, context)
            else:
                output[str(key)] = apply_template(value, data, context)
        return output
    if isinstance(template, list):
        return [apply_template(item, data, context) for item in template]
    return template


# ---- Choice rules ----------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "Equals": operator.eq,
    "LessThan": operator.lt,
    "GreaterThan": operator.gt,
    "LessThanEquals": operator.le,
    "GreaterThanEquals": operator.ge,
}


def _compare(operator_name: str, value: Any, other: Any) -> bool:
    """A data-test comparison; values of another type than the operator's never match."""
    if operator_name == "BooleanEquals":
        return isinstance(value, bool) and isinstance(other, bool) and value == other
    for kind in ("String", "Numeric", "Timestamp"):
        if not operator_name.startswith(kind):
            continue
        compare = _ORDER[operator_name.removeprefix(kind)]
        if kind == "String":
            return isinstance(value, str) and isinstance(other, str) and compare(value, other)
        if kind == "Numeric":
            return _number(value) and _number(other) and compare(value, other)
        left, right = _timestamp(value), _timestamp(other)
        return left is not None and right is not None and compare(left, right)
    raise UsageError(f"Choice operator {operator_name} is not emulated locally")


COMPARISON_OPERATORS = frozenset(
    {"BooleanEquals"} | {f"{kind}{order}" for kind in ("String", "Numeric", "Timestamp") for order in _ORDER}
)


def _matches(pattern: str, text: str) -> bool:
    """``StringMatches``: ``*`` is any run of characters; ``\\*`` and ``\\\\`` are literal."""
    regex = ""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            regex += re.escape(pattern[index + 1])
            index += 2
            continue
        regex += ".*" if char == "*" else re.escape(char)
        index += 1
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def choice_matches(rule: Mapping[str, Any], data: Any, context: Any) -> bool:
    """One Choice rule (And / Or / Not or a data-test expression) against the state's input."""
    if "And" in rule:
        return all(choice_matches(r, data, context) for r in rule["And"])
    if "Or" in rule:
        return any(choice_matches(r, data, context) for r in rule["Or"])
    if "Not" in rule:
        return not choice_matches(rule["Not"], data, context)
    variable = str(rule.get("Variable", ""))
    if "IsPresent" in rule:
        return path_exists(data, context, variable) is bool(rule["IsPresent"])
    value = read_path(data, context, variable)  # a missing path is States.Runtime, as in AWS
    type_tests: dict[str, Callable[[Any], bool]] = {
        "IsNull": lambda v: v is None,
        "IsNumeric": _number,
        "IsString": lambda v: isinstance(v, str),
        "IsBoolean": lambda v: isinstance(v, bool),
        "IsTimestamp": lambda v: _timestamp(v) is not None,
    }
    for name, test in type_tests.items():
        if name in rule:
            return test(value) is bool(rule[name])
    if "StringMatches" in rule:
        return isinstance(value, str) and _matches(str(rule["StringMatches"]), value)
    for operator_name in COMPARISON_OPERATORS:
        if operator_name in rule:
            return _compare(operator_name, value, rule[operator_name])
        if f"{operator_name}Path" in rule:
            other = read_path(data, context, str(rule[f"{operator_name}Path"]))
            return _compare(operator_name, value, other)
    raise UsageError(f"Choice rule {dict(rule)} uses an operator that is not emulated locally")


# ---- task integrations -----------------------------------------------------------------------------------


class TaskRunner(Protocol):
    def __call__(self, parameters: Mapping[str, Any], timeout_s: float | None) -> Any:
        """Run the ECS task described by RunTask ``parameters``; return the stopped task's description."""
        ...


class ServiceCaller(Protocol):
    def __call__(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        """Call ``service``'s API ``action`` (camelCase, as in the Resource) and return its response."""
        ...


def _now() -> str:
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
        started = _now()
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
                StoppedAt=_now(),
            )
            raise StatesError("States.TaskFailed", json.dumps(task)) from error
        container["ExitCode"] = completed.returncode
        self.log(f"  exit status {completed.returncode}")
        task.update(
            StopCode="EssentialContainerExited",
            StoppedReason="Essential container in task exited",
            StoppedAt=_now(),
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


# ---- the interpreter -------------------------------------------------------------------------------------


@dataclass
class StateRecord:
    """What one visit to a state did, for the log and for tests."""

    name: str
    type: str
    outcome: str  # succeeded, failed, caught, chose
    next: str | None = None
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0


@dataclass
class ExecutionResult:
    name: str
    status: str  # SUCCEEDED, FAILED, TIMED_OUT
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: list[StateRecord] = field(default_factory=list)

    @property
    def path(self) -> list[str]:
        return [record.name for record in self.history]

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "cause": self.cause,
            "output": self.output,
            "states": [
                {"name": r.name, "type": r.type, "outcome": r.outcome, "next": r.next, "error": r.error}
                for r in self.history
            ],
        }


def default_execution_name(now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"local-{moment.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def _error_matches(names: Sequence[str], error: str) -> bool:
    if error == "States.Runtime":
        return False  # never retried nor caught, as in AWS
    for name in names:
        if name in {error, "States.ALL"}:
            return True
        if name == "States.TaskFailed" and error != "States.Timeout":
            return True  # a wildcard for any error but a timeout
    return False


class LocalExecution:
    """One execution of a definition: ``LocalExecution(definition, ...).run(input)``."""

    def __init__(
        self,
        definition: Mapping[str, Any],
        *,
        name: str | None = None,
        state_machine_name: str = "local",
        run_task: TaskRunner | None = None,
        call_service: ServiceCaller | None = None,
        log: Log = lambda _line: None,
        sleep: Callable[[float], None] = time.sleep,
        max_retry_delay_s: float = DEFAULT_MAX_RETRY_DELAY_S,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        validate(definition)
        self.definition = definition
        self.name = name or default_execution_name()
        if not EXECUTION_NAME.match(self.name):
            raise UsageError(f"execution name {self.name!r}: use 1-80 letters, digits, - and _")
        self.state_machine_arn = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{state_machine_name}"
        self.run_task = run_task
        self.call_service = call_service
        self.log = log
        self.sleep = sleep
        self.max_retry_delay_s = max_retry_delay_s
        self.clock = clock
        self.rng = rng or random.Random()

    def _context(self, execution_input: Any, started: str) -> dict[str, Any]:
        return {
            "Execution": {
                "Id": self.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{self.name}",
                "Name": self.name,
                "Input": execution_input,
                "StartTime": started,
                "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/local-state-machine",
            },
            "StateMachine": {"Id": self.state_machine_arn, "Name": self.state_machine_arn.rsplit(":", 1)[-1]},
            "State": {},
        }

    def run(self, execution_input: Any = None) -> ExecutionResult:
        data: Any = {} if execution_input is None else execution_input
        started = _now()
        context = self._context(data, started)
        result = ExecutionResult(self.name, "RUNNING")
        states: Mapping[str, Any] = self.definition["States"]
        timeout = self.definition.get("TimeoutSeconds")
        begin = self.clock()
        current = str(self.definition["StartAt"])
        self.log(f"execution {self.name} of {context['StateMachine']['Name']}: starting at {current}")
        while True:
            if timeout is not None and self.clock() - begin > float(timeout):
                return self._end(result, "TIMED_OUT", error="States.Timeout", cause="execution timed out")
            state = states[current]
            context["State"] = {
                "Name": current,
                "EnteredTime": _now(),
                "RetryCount": 0,
            }
            record = StateRecord(current, str(state["Type"]), "succeeded")
            result.history.append(record)
            entered = self.clock()
            try:
                data, following = self._visit(current, state, data, context, record)
            except StatesError as error:
                record.seconds = self.clock() - entered
                record.outcome, record.error = "failed", error.error
                self.log(f"{current}: failed with {error.error}")
                return self._end(result, "FAILED", error=error.error, cause=error.cause)
            record.seconds = self.clock() - entered
            if following is None:
                if record.type == "Fail":
                    return self._end(result, "FAILED", error=record.error, cause=data)
                return self._end(result, "SUCCEEDED", output=data)
            current = following

    def _end(
        self,
        result: ExecutionResult,
        status: str,
        *,
        output: Any = None,
        error: str | None = None,
        cause: Any = None,
    ) -> ExecutionResult:
        result.status, result.output, result.error = status, output, error
        result.cause = None if cause is None else str(cause)
        where = result.history[-1].name if result.history else "-"
        detail = f" ({error}: {result.cause})" if error else ""
        self.log(f"execution {self.name}: {status} at {where}{detail}")
        return result

    # -- one state --

    def _visit(
        self, name: str, state: Mapping[str, Any], data: Any, context: Any, record: StateRecord
    ) -> tuple[Any, str | None]:
        kind = state["Type"]
        following = None if state.get("End") else state.get("Next")
        if kind == "Fail":
            record.outcome = "failed"
            record.error = (
                str(read_path(data, context, state["ErrorPath"]))
                if "ErrorPath" in state
                else state.get("Error")
            )
            cause = (
                read_path(data, context, state["CausePath"]) if "CausePath" in state else state.get("Cause")
            )
            self.log(f"{name}: Fail {record.error}")
            return cause, None
        effective = self._input_path(state, data, context)
        if kind == "Succeed":
            self.log(f"{name}: Succeed")
            return self._output_path(state, effective, context), None
        if kind == "Choice":
            for rule in state["Choices"]:
                if choice_matches(rule, effective, context):
                    following = str(rule["Next"])
                    break
            else:
                if "Default" not in state:
                    raise StatesError("States.NoChoiceMatched", f"no choice of {name} matched")
                following = str(state["Default"])
            record.outcome, record.next = "chose", following
            self.log(f"{name}: Choice -> {following}")
            return self._output_path(state, effective, context), following
        if kind == "Wait":
            seconds = (
                float(read_path(effective, context, state["SecondsPath"]))
                if "SecondsPath" in state
                else float(state.get("Seconds", 0))
            )
            self.log(f"{name}: Wait {seconds:g} s (locally at most {self.max_retry_delay_s:g} s)")
            self.sleep(min(seconds, self.max_retry_delay_s))
            record.next = following
            return self._output_path(state, effective, context), following
        if kind == "Pass":
            if "Parameters" in state:
                value = apply_template(state["Parameters"], effective, context)
            else:
                value = state.get("Result", effective)
            output = write_result(data, self._result_path(state), value)
            record.next = following
            self.log(f"{name}: Pass -> {following or 'end'}")
            return self._output_path(state, output, context), following
        return self._task(name, state, data, effective, context, record)

    def _task(
        self,
        name: str,
        state: Mapping[str, Any],
        data: Any,
        effective: Any,
        context: Any,
        record: StateRecord,
    ) -> tuple[Any, str | None]:
        following = None if state.get("End") else state.get("Next")
        retry_counts = [0] * len(state.get("Retry") or [])
        while True:
            try:
                parameters = (
                    apply_template(state["Parameters"], effective, context)
                    if "Parameters" in state
                    else effective
                )
                self.log(f"{name}: Task {state['Resource'].removeprefix('arn:aws:states:::')}")
                result = self._invoke(name, str(state["Resource"]), parameters, state.get("TimeoutSeconds"))
                if "ResultSelector" in state:
                    result = apply_template(state["ResultSelector"], result, context)
                output = write_result(data, self._result_path(state), result)
                record.next = following
                self.log(f"{name}: succeeded -> {following or 'end'}")
                return self._output_path(state, output, context), following
            except StatesError as error:
                delay = self._retry_delay(state, retry_counts, error.error)
                if delay is not None:
                    record.attempts += 1
                    context["State"]["RetryCount"] = record.attempts - 1
                    local = min(delay, self.max_retry_delay_s)
                    self.log(
                        f"{name}: {error.error}; retry {record.attempts - 1} after {delay:g} s"
                        f" (locally {local:g} s)"
                    )
                    self.sleep(local)
                    continue
                for catcher in state.get("Catch") or []:
                    if _error_matches(catcher.get("ErrorEquals") or [], error.error):
                        error_output = {"Error": error.error, "Cause": error.cause}
                        output = write_result(data, catcher.get("ResultPath", "$"), error_output)
                        record.outcome, record.error = "caught", error.error
                        record.next = str(catcher["Next"])
                        self.log(f"{name}: {error.error} caught -> {catcher['Next']}")
                        return output, str(catcher["Next"])
                raise

    def _retry_delay(self, state: Mapping[str, Any], counts: list[int], error: str) -> float | None:
        """Seconds before the next attempt, or None when no retrier matches or attempts are spent."""
        for index, retrier in enumerate(state.get("Retry") or []):
            if not _error_matches(retrier.get("ErrorEquals") or [], error):
                continue
            if counts[index] >= int(retrier.get("MaxAttempts", 3)):
                return None
            counts[index] += 1
            delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** (
                counts[index] - 1
            )
            if "MaxDelaySeconds" in retrier:
                delay = min(delay, float(retrier["MaxDelaySeconds"]))
            if retrier.get("JitterStrategy") == "FULL":
                delay = self.rng.uniform(0, delay)
            return delay
        return None

    def _invoke(self, name: str, resource: str, parameters: Any, timeout: Any) -> Any:
        kind, service, action = _integration(resource, name)
        if kind == "ecs":
            if self.run_task is None:
                raise UsageError(f"state {name} runs an ECS task, and no task runner was given")
            return self.run_task(parameters, float(timeout) if timeout is not None else None)
        if self.call_service is None:
            raise UsageError(f"state {name} calls {service}, and no service caller was given")
        return self.call_service(service, action, parameters)

    # -- input and output processing --

    @staticmethod
    def _result_path(state: Mapping[str, Any]) -> str | None:
        result_path: str | None = state.get("ResultPath", "$")
        return result_path

    @staticmethod
    def _input_path(state: Mapping[str, Any], data: Any, context: Any) -> Any:
        if "InputPath" not in state:
            return data
        if state["InputPath"] is None:
            return {}
        return read_path(data, context, str(state["InputPath"]))

    @staticmethod
    def _output_path(state: Mapping[str, Any], data: Any, context: Any) -> Any:
        if "OutputPath" not in state:
            return data
        if state["OutputPath"] is None:
            return {}
        return read_path(data, context, str(state["OutputPath"]))
