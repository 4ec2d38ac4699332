"""The intrinsic functions (``States.Format``, ``States.Array`` ...) and payload templates."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from infra.local.errors import UsageError
from infra.local.statemachine.errors import StatesError
from infra.local.statemachine.paths import parse_path, read_path


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


class IntrinsicParser:
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
        return _evaluate_call(IntrinsicParser(value).parse(), data, context)
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
