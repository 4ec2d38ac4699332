"""Runs one template function's handler in this process, the way one warm Lambda container would.

The handler module loads once (its module-level code is the cold start) with the function's
environment set and its CodeUri and layers on ``sys.path``; each invocation runs with that environment
again. ``os.environ`` is process-wide, so invocations are serialised across all hosts in the process:
like a Lambda container, a host handles one event at a time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from infra.local.errors import UsageError
from infra.local.lambda_context import LambdaContext
from infra.local.metrics import EmfTap
from infra.local.template import FunctionSpec

Handler = Callable[[Any, Any], Any]

_INVOKE_LOCK = threading.RLock()


class HandlerError(Exception):
    """The handler raised; ``payload`` is what the Lambda runtime reports for an unhandled error."""

    def __init__(self, error: BaseException, request_id: str) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.error = error
        self.payload: dict[str, Any] = {
            "errorMessage": str(error),
            "errorType": type(error).__name__,
            "requestId": request_id,
            # The handler's frames only, as the runtime reports them: ours are noise.
            "stackTrace": [
                line.rstrip("\n")
                for line in traceback.format_list(
                    [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
                )
            ],
        }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set variables for the block and put the previous ones back afterwards."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, previous in saved.items():
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


def _module_file(code_dir: Path, module_path: str) -> Path:
    relative = Path(*module_path.split("."))
    for candidate in (code_dir / relative.with_suffix(".py"), code_dir / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"handler module {module_path!r} not found in {code_dir}")


class FunctionHost:
    """One function, loaded lazily: ``invoke(event)`` returns what the handler returns."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str],
        *,
        log: TextIO | None = None,
        on_emf: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        """``on_emf``: called with each EMF document the handler prints (the local ``/metrics``)."""
        self.spec = spec
        self.environment = dict(environment)
        self.log = log if log is not None else sys.stderr
        self.on_emf = on_emf
        self._handler: Handler | None = None
        self.module: ModuleType | None = None

    def _load(self) -> Handler:
        module_path, _, attribute = self.spec.handler.rpartition(".")
        if not module_path or not attribute:
            raise UsageError(f"{self.spec.logical_id}: handler {self.spec.handler!r} is not module.function")
        if not self.spec.code_dir.is_dir():
            raise UsageError(f"{self.spec.logical_id}: CodeUri {self.spec.code_dir} does not exist")
        file = _module_file(self.spec.code_dir, module_path)
        # Code first, then layers, as /var/task precedes /opt/python in the Lambda runtime.
        for directory in reversed((self.spec.code_dir, *self.spec.layer_dirs)):
            if str(directory) not in sys.path:
                sys.path.insert(0, str(directory))
        # Two functions may both have app.py: a per-function module name keeps them apart.
        name = f"_local_lambda_{self.spec.logical_id}.{module_path}"
        module_spec = importlib.util.spec_from_file_location(name, file)
        assert module_spec is not None
        assert module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise UsageError(f"{self.spec.logical_id}: {file.name} has no function {attribute!r}")
        self.module = module
        return handler  # type: ignore[no-any-return]

    def invoke(self, event: Any, context: LambdaContext | None = None) -> Any:
        """Run the handler; HandlerError when it raises (an init error included)."""
        context = context or LambdaContext.for_function(self.spec)
        output = self.log if self.on_emf is None else EmfTap(self.log, self.on_emf)
        with _INVOKE_LOCK, patched_environ(self.environment), contextlib.redirect_stdout(output):
            try:
                if self._handler is None:
                    self._handler = self._load()
                return self._handler(event, context)
            except UsageError:
                raise
            except Exception as error:
                raise HandlerError(error, context.aws_request_id) from error


class FunctionHosts:
    """Hosts created on first use, one per function: what start-api and the poller invoke through."""

    def __init__(self, factory: Callable[[str], FunctionHost]) -> None:
        self._factory = factory
        self._hosts: dict[str, FunctionHost] = {}
        self._lock = threading.Lock()

    def get(self, function_id: str) -> FunctionHost:
        with self._lock:
            if function_id not in self._hosts:
                self._hosts[function_id] = self._factory(function_id)
            return self._hosts[function_id]
