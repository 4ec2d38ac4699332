"""One server as a child process on a port: start, wait until it answers (polling with a deadline), stop.

Output goes to a log file rather than a pipe, so a chatty server can never block on a full pipe and a
detached one can outlive us; a failed start raises :class:`ServerStartError` quoting that output.

Module-level imports are stdlib only: ``.venv-mongo`` (Python 3.13, without our dependencies)
imports this package to serve mongoeco (``python -m infra.local.servers mongoeco``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from infra.local.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0  # generous: a cold moto import on a busy 2-core machine takes seconds
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
OUTPUT_TAIL_CHARS = 2_000


class ServerStartError(RuntimeError):
    """A server exited or never answered; the message quotes the end of its output."""


def free_port() -> int:
    """A port nothing listens on right now (the kernel picks it; a race with another process is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """True when something listens on ``port``.

    SO_REUSEADDR mirrors what the servers themselves set, so connections of a server we just stopped
    (TIME_WAIT) do not count: that is what makes restart on the same port work.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def port_busy_message(port: int, port_variable: str) -> str:
    return f"port {port} is in use by another process; stop it or set {port_variable} to a free port"


def accepts_connections(port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still "exists" for kill(0); /proc says whether it is one.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def process_command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def stop_detached(pid: int, command: Sequence[str], timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """Stop a server that ``up`` started in its own session, if ``pid`` still runs ``command``.

    Checking the command line guards against killing an unrelated process that reused the pid.
    Returns whether a process was stopped.
    """
    if not process_alive(pid) or process_command_line(pid) != list(command):
        return False
    os.killpg(pid, signal.SIGTERM)  # the server was started with start_new_session: pid == its group
    deadline = time.monotonic() + timeout_s
    while process_alive(pid):
        if time.monotonic() > deadline:
            os.killpg(pid, signal.SIGKILL)
            break
        time.sleep(POLL_INTERVAL_S)  # polling a process we signalled; it is not ours to wait() on
    return True


def output_tail(path: Path, start_offset: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(start_offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(no output captured)"
    text = text.strip()
    if len(text) > OUTPUT_TAIL_CHARS:
        text = "..." + text[-OUTPUT_TAIL_CHARS:]
    return text or "(no output)"


class ChildServer:
    """One server process on a port: start, wait until it answers, stop, restart on the same port.

    ``work_dir`` holds the server's data and log; when not given, a temporary directory is made and
    removed by :meth:`close` (not by :meth:`stop`, so a restart finds its data again).
    ``detached`` starts the process in its own session so it outlives this Python process.
    """

    name = "server"
    port_variable = "PORT"

    def __init__(self, port: int | None = None, *, work_dir: Path | None = None, detached: bool = False):
        self.port = free_port() if port is None else port
        self.detached = detached
        self._given_work_dir = work_dir
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self._command: list[str] = []

    # ---- what a subclass provides ----
    def build_command(self) -> list[str]:
        raise NotImplementedError

    def answers(self) -> bool:
        """One quick readiness probe."""
        raise NotImplementedError

    def child_environment(self) -> dict[str, str] | None:
        return None

    def child_cwd(self) -> Path | None:
        return None

    # ---- lifecycle ----
    @property
    def work_dir(self) -> Path:
        if self._given_work_dir is not None:
            self._given_work_dir.mkdir(parents=True, exist_ok=True)
            return self._given_work_dir
        if self._temp_dir is None:
            self._temp_dir = tempfile.TemporaryDirectory(prefix=f"movierec-{self.name}-")
        return Path(self._temp_dir.name)

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def command(self) -> list[str]:
        """The command line of the running process (what ``down`` checks before it signals)."""
        return list(self._command)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def launch(self) -> None:
        """Start the process without waiting for it to answer (lets callers start several at once)."""
        if self.running:
            return
        if port_in_use(self.port):
            raise UsageError(port_busy_message(self.port, self.port_variable))
        self._command = self.build_command()
        log_path = self.log_path
        with log_path.open("ab") as log:
            self._log_offset = log.tell()
            self._process = subprocess.Popen(
                self._command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.child_cwd(),
                env=self.child_environment(),
                start_new_session=self.detached,
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        process = self._process
        if process is None:
            raise RuntimeError(f"{self.name} was not launched")
        deadline = time.monotonic() + timeout_s
        while True:
            status = process.poll()
            if status is not None:
                self._process = None
                raise ServerStartError(
                    f"{self.name} exited with status {status} before answering on port {self.port}; "
                    f"its output ({self.log_path}):\n{output_tail(self.log_path, self._log_offset)}"
                )
            if self.answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.name} did not answer on port {self.port} within {timeout_s:.0f} s; "
                    f"its output ({self.log_path}):\n{output_tail(self.log_path, self._log_offset)}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(POLL_INTERVAL_S)  # paces the polling and notices an early exit at once

    def start(self) -> Self:
        self.launch()
        self.wait_ready()
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after a grace period). Idempotent; keeps the data."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would: for fault injection."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self) -> Self:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary directory, if this object made one."""
        self.stop()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
