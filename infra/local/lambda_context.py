"""A LambdaContext with the attributes the Python runtime gives handlers (and Powertools reads)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from infra.local.template import FunctionSpec


@dataclass
class LambdaContext:
    """Mirrors ``awslambdaric``'s context object. Timeouts are reported, not enforced (see the docs)."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_s: float
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    identity: object | None = None
    client_context: object | None = None
    tenant_id: str | None = None
    clock: Callable[[], float] = time.monotonic
    _deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self._deadline = self.clock() + self.timeout_s
        if not self.log_group_name:
            self.log_group_name = f"/aws/lambda/{self.function_name}"
        if not self.log_stream_name:
            day = datetime.now(UTC).strftime("%Y/%m/%d")
            self.log_stream_name = f"{day}/[{self.function_version}]{uuid.uuid4().hex}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self.clock()) * 1000))

    @classmethod
    def for_function(
        cls, spec: FunctionSpec, *, request_id: str | None = None, clock: Callable[[], float] = time.monotonic
    ) -> LambdaContext:
        return cls(
            function_name=spec.function_name,
            memory_limit_in_mb=spec.memory_mb,
            invoked_function_arn=spec.arn,
            timeout_s=spec.timeout_s,
            aws_request_id=request_id or str(uuid.uuid4()),
            clock=clock,
        )
