"""What the state-machine tests share (test_statemachine*.py): the pipeline's stages, and a recorder
standing in for the AWS service calls and for time.sleep."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra.local.statemachine import StatesError

STAGES = ["export", "fit", "publish"]


class Recorder:
    """Stands in for the AWS service calls and for time.sleep."""

    def __init__(self, failures: Mapping[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.failures = dict(failures or {})

    def call(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        self.calls.append((service, action, dict(parameters)))
        if self.failures.get(service, 0) > 0:
            self.failures[service] -= 1
            raise StatesError("SNS.InternalErrorException", "the service failed")
        return {"MessageId": f"m{len(self.calls)}"} if service == "sns" else {}

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def published(self) -> list[dict[str, Any]]:
        return [parameters for service, _, parameters in self.calls if service == "sns"]
