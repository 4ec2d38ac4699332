"""``make up`` / ``make down``: the local cloud as long-lived servers on fixed ports.

moto (a LocalStack-compatible endpoint) on 4566, Redis on 6379, MongoDB on 27017; each port can be
moved with ``--*-port`` or ``MOTO_PORT`` / ``REDIS_PORT`` / ``MONGO_PORT``. A LocalStack already
listening on the AWS port is used instead of moto; ``MONGODB_URI`` means an external MongoDB.
What ``up`` started is recorded in ``.local/cloud.json``, which ``down`` and the runner read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from infra.local.bootstrap import bootstrap
from infra.local.errors import UsageError
from infra.local.servers import (
    ChildServer,
    MongoServer,
    MotoServer,
    RedisServer,
    choose_mongo_backend,
    is_localstack,
    port_busy_message,
    port_in_use,
    process_alive,
    process_command_line,
    stop_detached,
)
from infra.local.template import DEFAULT_TEMPLATE, state_dir_for

DEFAULT_PORTS = {"MOTO_PORT": 4566, "REDIS_PORT": 6379, "MONGO_PORT": 27017}


def cloud_file(template: Path = DEFAULT_TEMPLATE) -> Path:
    return state_dir_for(template) / "cloud.json"


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="start moto, Redis and MongoDB and create the template's resources")
    for variable, port in DEFAULT_PORTS.items():
        flag = "--" + variable.lower().replace("_", "-")
        up.add_argument(flag, type=int, default=int(os.environ.get(variable, port)), help=f"default: {port}")
    up.set_defaults(func=up_command)
    down = commands.add_parser("down", help="stop what `up` started")
    down.set_defaults(func=down_command)
    status = commands.add_parser("status", help="what is running, and the variables to reach it")
    status.add_argument("--exports", action="store_true", help="print only `export NAME=value` lines")
    status.set_defaults(func=status_command)


def up_command(args: argparse.Namespace) -> int:
    state_path = cloud_file()
    if state_path.exists() and _running(json.loads(state_path.read_text())):
        print("the local cloud is already up:", file=sys.stderr)
        return status_command(argparse.Namespace(exports=False))
    work = state_path.parent / "cloud"
    work.mkdir(parents=True, exist_ok=True)
    servers: list[ChildServer] = []
    state: dict[str, Any] = {"processes": []}

    aws_url = f"http://127.0.0.1:{args.moto_port}"
    if port_in_use(args.moto_port) and is_localstack(aws_url):
        print(f"using the LocalStack already on {aws_url}")
    else:
        servers.append(
            _checked(MotoServer(args.moto_port, work_dir=work / "moto", detached=True), args.moto_port)
        )
    servers.append(
        _checked(RedisServer(args.redis_port, work_dir=work / "redis", detached=True), args.redis_port)
    )
    backend = choose_mongo_backend()
    if backend == "external":
        mongodb_uri = os.environ["MONGODB_URI"]
    else:
        mongo = _checked(
            MongoServer(args.mongo_port, backend=backend, work_dir=work / "mongo", detached=True),
            args.mongo_port,
        )
        servers.append(mongo)
        mongodb_uri = mongo.uri
    try:
        for server in servers:
            server.start()
            assert server.pid is not None
            # What the process calls itself now (redis-server retitles itself), so `down` can
            # recognise it and never signal an unrelated process that reused the pid.
            title = process_command_line(server.pid)
            state["processes"].append({"name": server.name, "pid": server.pid, "command": title})
            print(f"started {server.name} on port {server.port}")
    except Exception:
        for server in servers:
            server.stop()
        raise
    state |= {
        "aws_endpoint_url": aws_url,
        "redis_url": f"redis://127.0.0.1:{args.redis_port}/0",
        "mongodb_uri": mongodb_uri,
    }
    state_path.write_text(json.dumps(state, indent=2) + "\n")
    resources = bootstrap(aws_url, DEFAULT_TEMPLATE, secret_values={"MongoDbSecret": mongodb_uri})
    print(
        f"created stream {resources.stream_name}, bucket {resources.bucket_name}, "
        f"queue {resources.dead_letter_queue_name}"
    )
    print("\n" + _exports(state))
    return 0


def down_command(args: argparse.Namespace) -> int:
    del args
    state_path = cloud_file()
    if not state_path.exists():
        print("the local cloud is not up")
        return 0
    state = json.loads(state_path.read_text())
    for process in state.get("processes", []):
        stopped = stop_detached(int(process["pid"]), process["command"])
        print(f"{'stopped' if stopped else 'already gone:'} {process['name']} (pid {process['pid']})")
    state_path.unlink()
    return 0


def status_command(args: argparse.Namespace) -> int:
    state_path = cloud_file()
    if not state_path.exists():
        raise UsageError("the local cloud is not up; run `make up`")
    state = json.loads(state_path.read_text())
    if not args.exports:
        for process in state.get("processes", []):
            alive = _running({"processes": [process]})
            print(f"{process['name']:<6} pid {process['pid']:<8} {'running' if alive else 'NOT RUNNING'}")
    print(_exports(state))
    return 0


def _checked(server: ChildServer, port: int) -> Any:
    if port_in_use(port):
        raise UsageError(port_busy_message(port, server.port_variable))
    return server


def _running(state: dict[str, Any]) -> bool:
    processes = state.get("processes", [])
    return bool(processes) and all(
        process_alive(int(p["pid"])) and process_command_line(int(p["pid"])) == list(p["command"])
        for p in processes
    )


def _exports(state: dict[str, Any]) -> str:
    variables = {
        "AWS_ENDPOINT_URL": state["aws_endpoint_url"],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REDIS_URL": state["redis_url"],
        "MONGODB_URI": state["mongodb_uri"],
    }
    return "\n".join(f"export {name}={value}" for name, value in variables.items())
