"""Errors in the States Language sense: a name (``States.TaskFailed``) and a cause."""

from __future__ import annotations


class StatesError(Exception):
    """An error in the States Language sense: a name (``States.TaskFailed``) and a cause."""

    def __init__(self, error: str, cause: str = "") -> None:
        super().__init__(f"{error}: {cause}" if cause else error)
        self.error = error
        self.cause = cause


class PathNotFoundError(StatesError):
    def __init__(self, path: str) -> None:
        super().__init__("States.Runtime", f"the JSONPath {path} could not be found in the input")
