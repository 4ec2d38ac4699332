"""One execution, state by state, as Step Functions runs it: paths, Retry and Catch, the context object."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.local.errors import UsageError
from infra.local.statemachine.choice import choice_matches
from infra.local.statemachine.definition import (
    DEFAULT_MAX_RETRY_DELAY_S,
    EXECUTION_NAME,
    integration,
    validate,
)
from infra.local.statemachine.errors import StatesError
from infra.local.statemachine.intrinsics import apply_template
from infra.local.statemachine.paths import read_path, write_result
from infra.local.statemachine.tasks import Log, ServiceCaller, TaskRunner, now_text
from infra.local.template import ACCOUNT_ID, REGION


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
        started = now_text()
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
                "EnteredTime": now_text(),
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
        kind, service, action = integration(resource, name)
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
