"""A state machine's definition: loaded with its substitutions, and checked against what is emulated
before anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from infra.local.errors import UsageError
from infra.local.statemachine.choice import COMPARISON_OPERATORS
from infra.local.statemachine.intrinsics import IntrinsicParser
from infra.local.statemachine.paths import parse_path
from infra.local.template import StateMachineSpec

ECS_RUN_TASK_SYNC = "arn:aws:states:::ecs:runTask.sync"
OPTIMISED_SERVICES = {"arn:aws:states:::sns:publish": ("sns", "publish")}
AWS_SDK_PREFIX = "arn:aws:states:::aws-sdk:"
SUPPORTED_STATES = frozenset({"Task", "Pass", "Choice", "Wait", "Succeed", "Fail"})
EXECUTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
DEFAULT_MAX_RETRY_DELAY_S = 1.0


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
            integration(str(state.get("Resource", "")), name)
        for key in ("Parameters", "ResultSelector"):
            if key in state:
                _check_template(state[key], f"state {name} {key}")


def integration(resource: str, state_name: str) -> tuple[str, str, str]:
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
                    IntrinsicParser(value).parse()
                else:
                    parse_path(value)
            else:
                _check_template(value, where)
    elif isinstance(template, list):
        for item in template:
            _check_template(item, where)
