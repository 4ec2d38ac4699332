"""Choice rules: comparisons, ``And``/``Or``/``Not``, ``IsPresent`` and the type tests."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from infra.local.errors import UsageError
from infra.local.statemachine.paths import path_exists, read_path


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
