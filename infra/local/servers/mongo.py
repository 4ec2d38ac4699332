"""MongoDB for local use and tests: MONGODB_URI, else ``mongod``, else mongoeco's wire server from
``.venv-mongo`` (docs/mongodb-backend.md compares them).

Module-level imports are stdlib only: ``.venv-mongo`` (Python 3.13, without our dependencies)
imports this package to serve mongoeco (``python -m infra.local.servers mongoeco``).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from infra.local.errors import UsageError
from infra.local.servers.process import (
    HOST,
    POLL_INTERVAL_S,
    REPO_ROOT,
    START_TIMEOUT_S,
    ChildServer,
    ServerStartError,
    accepts_connections,
)

MongoBackend = Literal["external", "mongod", "mongoeco", "nx-27017"]


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
