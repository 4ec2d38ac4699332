"""The serve benchmark's start-api round (``python -m bench.serve``): ``python -m infra.local start-api`` as a
child process (``python -m bench.serve --start-api PORT``) and a threaded keep-alive load generator."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import Servers, per_second, progress, summarize_ns
from bench.serve_subjects import REPO_ROOT, K
from infra.local.apigw import local_jwt
from infra.local.servers import accepts_connections, free_port


def start_api(redis_url: str, aws_endpoint: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    environment = dict(os.environ, REDIS_URL=redis_url, AWS_ENDPOINT_URL=aws_endpoint)
    command = [sys.executable, "-m", "bench.serve", "--start-api", str(port)]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    deadline = time.monotonic() + 60
    while not accepts_connections(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            tail = log.read_text(errors="replace")[-1_500:]
            raise StartApiError(f"start-api did not come up: {tail}")
        time.sleep(0.1)  # polling a child process's port with a deadline
    return process, port


class StartApiError(RuntimeError):
    """The local API server would not start (the working tree it loads may be mid-edit)."""


def http_get(connection: http.client.HTTPConnection, path: str, token: str) -> tuple[int, bytes]:
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = connection.getresponse()
    return response.status, response.read()


def load(port: int, tokens: Sequence[str], concurrency: int, seconds: float) -> dict[str, Any]:
    """``concurrency`` keep-alive clients, each sending requests back to back until time is up."""
    path = f"/v1/recommendations?k={K}"
    latencies: list[list[int]] = [[] for _ in range(concurrency)]
    statuses: list[dict[int, int]] = [{} for _ in range(concurrency)]
    start_line = threading.Barrier(concurrency + 1)
    stop_at = [0.0]

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        mine, codes = latencies[index], statuses[index]
        position = index
        start_line.wait()
        while time.monotonic() < stop_at[0]:
            token = tokens[position % len(tokens)]
            position += concurrency
            started = time.perf_counter_ns()
            try:
                status, _ = http_get(connection, path, token)
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            mine.append(time.perf_counter_ns() - started)
            codes[status] = codes.get(status, 0) + 1
        connection.close()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.monotonic() + seconds
    began = time.perf_counter_ns()
    start_line.wait()
    for thread in threads:
        thread.join(seconds + 30)
    elapsed = time.perf_counter_ns() - began
    samples = [sample for bucket in latencies for sample in bucket]
    codes: dict[str, int] = {}
    for bucket in statuses:
        for status, count in bucket.items():
            codes[str(status)] = codes.get(str(status), 0) + count
    summary = summarize_ns(samples)
    ok = codes.get("200", 0)
    return {
        "concurrency": concurrency,
        "seconds": round(elapsed / 1e9, 2),
        "requests": len(samples),
        "requests_per_s": round(per_second(ok, elapsed), 1),
        "p50_ms": round(summary.p50_ms, 3),
        "p99_ms": round(summary.p99_ms, 3),
        "status": codes,
    }


def start_api_throughput(servers: Servers, users: Sequence[str], seconds: float, log: Path) -> dict[str, Any]:
    try:
        process, port = start_api(servers.redis_url, servers.aws_endpoint, log)
    except StartApiError as error:
        progress(str(error))
        return {"error": str(error)}  # the in-process figures stand without it
    try:
        tokens = [local_jwt({"sub": user}, ttl_s=3_600) for user in users]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        status, body = http_get(connection, f"/v1/recommendations?k={K}", tokens[0])  # the cold start
        connection.close()
        if status != 200 or json.loads(body)["source"] != "personalized":
            raise RuntimeError(f"start-api answered {status}: {body[:200]!r}")
        load(port, tokens, 4, min(1.0, seconds))  # warm-up
        return {"c1": load(port, tokens, 1, seconds), "c8": load(port, tokens, 8, seconds)}
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_start_api(port: int) -> int:
    """``python -m infra.local start-api --port PORT``: the same command function, called directly."""
    # Imported here, in the child only: the in-process measurements do not depend on the runner.
    from infra.local.runner import start_api_command
    from infra.local.template import DEFAULT_TEMPLATE, STACK_NAME

    arguments = argparse.Namespace(
        template=str(DEFAULT_TEMPLATE),
        stack_name=STACK_NAME,
        parameter_overrides=None,
        env_vars=None,
        host="127.0.0.1",
        port=port,
    )
    return start_api_command(arguments)
