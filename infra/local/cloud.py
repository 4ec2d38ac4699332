"""``make up`` / ``make down``: the local cloud as long-lived servers on fixed ports.

moto (a LocalStack-compatible endpoint) on 4566, Redis on 6379, MongoDB on 27017, and, when Debian's
``prometheus`` is installed (``make prometheus``), Prometheus on 9090 scraping ``start-api`` (3000) and a
Pushgateway on 9091 that training runs push to. Each port can be moved with ``--*-port`` or
``MOTO_PORT`` / ``REDIS_PORT`` / ``MONGO_PORT`` / ``PROMETHEUS_PORT`` / ``PUSHGATEWAY_PORT``.
A LocalStack already listening on the AWS port is used instead of moto; ``MONGODB_URI`` means an
external MongoDB.
What ``up`` started is recorded in ``.local/cloud.json``, which ``down``, ``status`` and the runner
(``infra.local.template.LocalCloud.load``) read.

:class:`CloudServers` is the same thing as a Python API, for tests and scripts: any state directory,
any ports (free ones by default), servers detached so they outlive the process that started them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from infra.local.errors import UsageError
from infra.local.servers import (
    ChildServer,
    MongoServer,
    MotoServer,
    PrometheusServer,
    PushgatewayServer,
    RedisServer,
    ServerStartError,
    choose_mongo_backend,
    free_port,
    is_localstack,
    port_busy_message,
    port_in_use,
    process_alive,
    process_command_line,
    prometheus_available,
    stop_detached,
)
from infra.local.template import DEFAULT_TEMPLATE, state_dir_for

DEFAULT_PORTS = {
    "MOTO_PORT": 4566,
    "REDIS_PORT": 6379,
    "MONGO_PORT": 27017,
    "PROMETHEUS_PORT": 9090,
    "PUSHGATEWAY_PORT": 9091,
}
DEFAULT_API_TARGET = "127.0.0.1:3000"
"""Where ``python -m infra.local start-api`` listens by default: Prometheus scrapes its /metrics."""
STATE_FILE = "cloud.json"


def cloud_file(template: Path = DEFAULT_TEMPLATE) -> Path:
    return state_dir_for(template) / STATE_FILE


@dataclass
class CloudState:
    """What ``up`` started (pid and process title of each server) and where everything listens."""

    aws_endpoint_url: str
    redis_url: str
    mongodb_uri: str
    processes: list[dict[str, Any]] = field(default_factory=list)
    prometheus_url: str | None = None
    pushgateway_url: str | None = None

    @classmethod
    def read(cls, path: Path) -> CloudState | None:
        if not path.is_file():
            return None
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                aws_endpoint_url=str(saved["aws_endpoint_url"]),
                redis_url=str(saved["redis_url"]),
                mongodb_uri=str(saved["mongodb_uri"]),
                processes=list(saved.get("processes", [])),
                prometheus_url=saved.get("prometheus_url"),
                pushgateway_url=saved.get("pushgateway_url"),
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UsageError(f"{path} is unreadable ({error}); delete it and run `make up` again") from error

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "processes": self.processes,
            "aws_endpoint_url": self.aws_endpoint_url,
            "redis_url": self.redis_url,
            "mongodb_uri": self.mongodb_uri,
            "prometheus_url": self.prometheus_url,
            "pushgateway_url": self.pushgateway_url,
        }
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")

    def running(self) -> bool:
        """Every process ``up`` started still runs (an all-external cloud counts as running)."""
        return all(_still_ours(process) for process in self.processes)

    def environment(self) -> dict[str, str]:
        """The variables a shell, a handler or a test needs to reach this cloud."""
        monitoring = {
            name: url
            for name, url in (
                ("PROMETHEUS_URL", self.prometheus_url),
                ("PUSHGATEWAY_URL", self.pushgateway_url),
            )
            if url
        }
        return {
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "REDIS_URL": self.redis_url,
            "MONGODB_URI": self.mongodb_uri,
        } | monitoring

    def exports(self) -> str:
        return "\n".join(f"export {name}={value}" for name, value in self.environment().items())


def _still_ours(process: dict[str, Any]) -> bool:
    pid = int(process["pid"])
    return process_alive(pid) and process_command_line(pid) == list(process["command"])


class CloudServers:
    """moto, Redis, MongoDB (and Prometheus with its Pushgateway) as detached servers, recorded in
    ``state_dir/cloud.json``.

    ``up()`` is idempotent (a running cloud is reused) and ``down()`` stops exactly what ``up()``
    started, even from another process. Server data lives in ``state_dir/cloud/``: MongoDB's survives
    ``down`` and ``up``; Redis keeps nothing (no persistence), like a fresh cache node; Prometheus keeps
    its series in ``state_dir/cloud/prometheus``. Ports default to free ones; the CLI passes the fixed
    ones. ``monitoring`` (default: whether Prometheus is installed) starts Prometheus and the Pushgateway.
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        moto_port: int | None = None,
        redis_port: int | None = None,
        mongo_port: int | None = None,
        prometheus_port: int | None = None,
        pushgateway_port: int | None = None,
        api_target: str = DEFAULT_API_TARGET,
        monitoring: bool | None = None,
    ):
        self.state_dir = state_dir
        self.moto_port = free_port() if moto_port is None else moto_port
        self.redis_port = free_port() if redis_port is None else redis_port
        self.mongo_port = free_port() if mongo_port is None else mongo_port
        self.prometheus_port = free_port() if prometheus_port is None else prometheus_port
        self.pushgateway_port = free_port() if pushgateway_port is None else pushgateway_port
        self.api_target = api_target
        self.monitoring = prometheus_available() if monitoring is None else monitoring

    @property
    def state_path(self) -> Path:
        return self.state_dir / STATE_FILE

    def state(self) -> CloudState | None:
        return CloudState.read(self.state_path)

    def up(self, *, log: Any = None) -> tuple[CloudState, bool]:
        """Start what is not running; returns the state and whether anything was started."""
        say = log or (lambda message: None)
        current = self.state()
        if current is not None and current.running():
            return current, False
        if current is not None:  # a stale record: stop any survivor before starting afresh
            self.down()
        work = self.state_dir / "cloud"
        aws_url = f"http://127.0.0.1:{self.moto_port}"
        servers: list[ChildServer] = []
        if port_in_use(self.moto_port) and is_localstack(aws_url):
            say(f"using the LocalStack already on {aws_url}")
        else:
            servers.append(MotoServer(self.moto_port, work_dir=work / "moto", detached=True))
        redis = RedisServer(self.redis_port, work_dir=work / "redis", detached=True)
        servers.append(redis)
        backend = choose_mongo_backend()
        if backend == "external":
            mongodb_uri = os.environ["MONGODB_URI"]
            say("using the MongoDB that MONGODB_URI names")
        else:
            mongo = MongoServer(self.mongo_port, backend=backend, work_dir=work / "mongo", detached=True)
            servers.append(mongo)
            mongodb_uri = mongo.uri
        state = CloudState(aws_endpoint_url=aws_url, redis_url=redis.url, mongodb_uri=mongodb_uri)
        if self.monitoring:
            pushgateway = PushgatewayServer(
                self.pushgateway_port, work_dir=work / "pushgateway", detached=True
            )
            prometheus = PrometheusServer(
                self.prometheus_port,
                api_targets=[self.api_target],
                pushgateway=pushgateway.address,
                work_dir=work / "prometheus",
                detached=True,
            )
            servers += [pushgateway, prometheus]
            state.prometheus_url, state.pushgateway_url = prometheus.url, pushgateway.url
        ports = [server.port for server in servers]
        if len(set(ports)) != len(ports):
            raise UsageError(f"the servers need {len(ports)} different ports, not {ports}")
        for server in servers:  # every port is checked before anything starts
            if port_in_use(server.port):
                raise UsageError(port_busy_message(server.port, server.port_variable))
        try:
            for server in servers:  # launch all, then wait: moto's import overlaps the others' start
                server.launch()
            for server in servers:
                server.wait_ready()
                assert server.pid is not None
                # What the process calls itself now (redis-server retitles itself), so `down` can
                # recognise it and never signal an unrelated process that reused the pid.
                title = process_command_line(server.pid)
                state.processes.append({"name": server.name, "pid": server.pid, "command": title})
                say(f"started {server.name} on port {server.port} (pid {server.pid})")
        except BaseException:
            for server in servers:
                server.stop()
            raise
        state.write(self.state_path)
        return state, True

    def down(self) -> list[str]:
        """Stop what ``up`` started; idempotent. Returns one line per process."""
        state = self.state()
        if state is None:
            return []
        lines = []
        for process in state.processes:
            stopped = stop_detached(int(process["pid"]), process["command"])
            lines.append(
                f"{'stopped' if stopped else 'already gone:'} {process['name']} (pid {process['pid']})"
            )
        self.state_path.unlink(missing_ok=True)
        return lines

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()


def bootstrap_resources(state: CloudState, template: Path) -> str:
    """Create the template's stream, bucket, queue and secrets; one line saying what exists."""
    try:
        from infra.local.bootstrap import bootstrap  # lazily: it pulls in boto3 and the template model
    except ModuleNotFoundError as error:
        if error.name != "infra.local.bootstrap":
            raise
        return "note: infra.local.bootstrap is absent, so no AWS resources were created"
    resources = bootstrap(
        state.aws_endpoint_url, template, secret_values={"MongoDbSecret": state.mongodb_uri}
    )
    return (
        f"created stream {resources.stream_name}, bucket {resources.bucket_name}, "
        f"queue {resources.dead_letter_queue_name}"
    )


# ---- the commands -------------------------------------------------------------------------------------
def register(commands: Any) -> None:
    up = commands.add_parser(
        "up", help="start moto, Redis, MongoDB (Prometheus, Pushgateway) and create the template's resources"
    )
    for variable, port in DEFAULT_PORTS.items():
        flag = "--" + variable.lower().replace("_", "-")
        up.add_argument(flag, type=int, default=None, help=f"default: ${variable}, else {port}")
    up.set_defaults(func=up_command)
    down = commands.add_parser("down", help="stop what `up` started")
    down.set_defaults(func=down_command)
    status = commands.add_parser("status", help="what is running, and the variables to reach it")
    status.add_argument("--exports", action="store_true", help="print only `export NAME=value` lines")
    status.set_defaults(func=status_command)


def port_setting(flag_value: int | None, variable: str) -> int:
    """The flag, else the environment variable, else the fixed default; a bad value is a usage error."""
    if flag_value is not None:
        port = flag_value
    else:
        raw = os.environ.get(variable, str(DEFAULT_PORTS[variable]))
        try:
            port = int(raw)
        except ValueError:
            raise UsageError(f"{variable}={raw!r} is not a port number") from None
    if not 1 <= port <= 65_535:
        raise UsageError(f"{variable}={port} is not a port number (1-65535)")
    return port


def up_command(args: argparse.Namespace) -> int:
    servers = CloudServers(
        state_dir_for(DEFAULT_TEMPLATE),
        moto_port=port_setting(args.moto_port, "MOTO_PORT"),
        redis_port=port_setting(args.redis_port, "REDIS_PORT"),
        mongo_port=port_setting(args.mongo_port, "MONGO_PORT"),
        prometheus_port=port_setting(args.prometheus_port, "PROMETHEUS_PORT"),
        pushgateway_port=port_setting(args.pushgateway_port, "PUSHGATEWAY_PORT"),
    )
    try:
        state, started = servers.up(log=print)
    except ServerStartError as error:
        raise UsageError(str(error)) from error  # a person reads it: the server's own words, no traceback
    if not started:
        print("the local cloud is already up:", file=sys.stderr)
        return status_command(argparse.Namespace(exports=False))
    print(bootstrap_resources(state, DEFAULT_TEMPLATE))
    if state.prometheus_url:
        print(
            f"Prometheus {state.prometheus_url} scrapes start-api on {DEFAULT_API_TARGET} and the Pushgateway"
        )
    else:
        print("Prometheus is not installed (`make prometheus`): no local Prometheus or Pushgateway")
    print("\n" + state.exports())
    return 0


def down_command(args: argparse.Namespace) -> int:
    del args
    lines = CloudServers(
        state_dir_for(DEFAULT_TEMPLATE), moto_port=0, redis_port=0, mongo_port=0,
        prometheus_port=0, pushgateway_port=0, monitoring=False,
    ).down()  # fmt: skip
    print("\n".join(lines) if lines else "the local cloud is not up")
    return 0


def status_command(args: argparse.Namespace) -> int:
    state = CloudState.read(cloud_file())
    if state is None:
        raise UsageError("the local cloud is not up; run `make up`")
    if not args.exports:
        for process in state.processes:
            alive = _still_ours(process)
            print(f"{process['name']:<6} pid {process['pid']:<8} {'running' if alive else 'NOT RUNNING'}")
    print(state.exports())
    return 0 if state.running() else 1
