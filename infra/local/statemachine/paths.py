"""Reference paths (``$.a.b[0]``, ``$$.Execution.Name``): reading them and writing results."""

from __future__ import annotations

import json
import re
from typing import Any

from infra.local.errors import UsageError
from infra.local.statemachine.errors import PathNotFoundError, StatesError

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
