"""Shared benchmark plumbing: samples and percentiles, interleaved timing, output, servers, traffic counts.

Rules every benchmark here follows (docs/benchmarks.md):

* every figure is reported next to a baseline measured in the same process, in the same run, against
  the same server, so the machine's speed cancels out of the ratio;
* the subject and its baseline are measured in interleaved rounds (in a fresh, seeded random order
  each round), so a noisy neighbour on a shared machine slows both rather than one;
* latencies are ``perf_counter_ns`` samples summarised as median (p50), p99 and mean, in milliseconds;
* ``--json`` prints exactly one JSON object on stdout. Lambda handlers print EMF metrics and logs to
  stdout, so :func:`claim_stdout` moves file descriptor 1 to ``/dev/null`` for the whole run and hands
  back a private stream for the result.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import math
import os
import pstats
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TextIO

import pymongo.monitoring
import redis.connection

from infra.local.servers import MongoServer, MotoServer, RedisServer, choose_mongo_backend

NS_PER_MS = 1_000_000
AWS_REGION = "us-east-1"

# Environment variables that point a benchmark at servers that already run (``make up``) instead of
# starting private ones. MONGODB_URI is honoured through infra.local.servers.choose_mongo_backend.
REDIS_URL_VARIABLE = "BENCH_REDIS_URL"
AWS_ENDPOINT_VARIABLE = "BENCH_AWS_ENDPOINT_URL"


# ---- statistics ----------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between closest ranks.

    This is numpy's default method ("linear", Hyndman & Fan type 7): the median of an even count is the
    mean of the middle two, p0 is the minimum and p100 the maximum.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0 or math.isnan(q):
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    fraction = position - lower
    return ordered[lower] + (ordered[upper] - ordered[lower]) * fraction


@dataclass(frozen=True)
class Summary:
    """Latency samples summarised, in milliseconds."""

    n: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self, digits: int = 4) -> dict[str, float | int]:
        return {
            "p50_ms": round(self.p50_ms, digits),
            "p99_ms": round(self.p99_ms, digits),
            "mean_ms": round(self.mean_ms, digits),
            "min_ms": round(self.min_ms, digits),
            "max_ms": round(self.max_ms, digits),
            "n": self.n,
        }


def summarize_ns(samples_ns: Sequence[int]) -> Summary:
    """p50/p99/mean/min/max of ``perf_counter_ns`` durations, in milliseconds."""
    if not samples_ns:
        raise ValueError("no samples to summarise")
    ms = [sample / NS_PER_MS for sample in samples_ns]
    return Summary(
        n=len(ms),
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=math.fsum(ms) / len(ms),
        min_ms=min(ms),
        max_ms=max(ms),
    )


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded; None when either is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, digits)


def per_second(count: float, total_ns: int) -> float:
    """A rate from a count and the nanoseconds it took."""
    if total_ns <= 0:
        raise ValueError("a rate needs a positive duration")
    return count * 1e9 / total_ns


# ---- timing --------------------------------------------------------------------------------------------


def time_ns(action: Callable[[], object]) -> int:
    """One call's duration in nanoseconds."""
    started = time.perf_counter_ns()
    action()
    return time.perf_counter_ns() - started


def measure(action: Callable[[], object], *, samples: int, warmup: int = 0) -> list[int]:
    """``warmup`` untimed calls, then ``samples`` timed ones."""
    for _ in range(warmup):
        action()
    gc.collect()
    return [time_ns(action) for _ in range(samples)]


def interleave(
    cases: Mapping[str, Callable[[], object]],
    *,
    samples: int,
    warmup: int = 0,
    block: int = 1,
    seed: int = 0,
) -> dict[str, list[int]]:
    """Time several actions in interleaved rounds: ``block`` calls of each per round, in an order
    shuffled afresh each round (seeded, so a run is repeatable).

    Each case gets ``samples`` samples (rounded up to a whole block). The first call of a block runs
    colder than the rest, and how much colder depends on what ran just before it. A shuffled order gives
    every case every neighbour: no case always runs first, last, or after the same other case. (A
    rotated order, used until 2026-11-29, kept the cyclic order fixed: the personalized tier always ran
    right after the bare Powertools resolver, the raw GET after global popularity; docs/benchmarks.md.)
    """
    if block < 1:
        raise ValueError("block must be at least 1")
    rng = random.Random(seed)
    names = list(cases)
    for name in names:
        for _ in range(warmup):
            cases[name]()
    gc.collect()
    results: dict[str, list[int]] = {name: [] for name in names}
    rounds = math.ceil(samples / block)
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            action = cases[name]
            bucket = results[name]
            for _ in range(block):
                bucket.append(time_ns(action))
    return results


# ---- command line and output ---------------------------------------------------------------------------


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(prog=prog, description=description)
    arguments.add_argument("--quick", action="store_true", help="a smaller run that stays under 60 s")
    arguments.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    arguments.add_argument(
        "--profile",
        metavar="FILE",
        help="cProfile the subject's calls: pstats to FILE, the top functions to stderr",
    )
    return arguments


class Profiler:
    """cProfile around the subject's calls only (not set-up or baselines); a no-op without a path."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._profile = cProfile.Profile() if path else None

    @contextmanager
    def active(self) -> Iterator[None]:
        if self._profile is None:
            yield
            return
        self._profile.enable()
        try:
            yield
        finally:
            self._profile.disable()

    def report(self, limit: int = 30) -> None:
        if self._profile is None or self.path is None:
            return
        self._profile.dump_stats(self.path)
        text = io.StringIO()
        stats = pstats.Stats(self._profile, stream=text).strip_dirs()
        stats.sort_stats("cumulative").print_stats(limit)
        stats.sort_stats("tottime").print_stats(limit)
        print(text.getvalue(), file=sys.stderr)


def claim_stdout() -> TextIO:
    """Send file descriptor 1 to /dev/null and return a stream on the original stdout.

    Handlers under test print EMF metrics and Powertools logs to stdout (that is how Lambda ships them
    to CloudWatch). They still pay for the write, into /dev/null, and the result stays clean.
    """
    sys.stdout.flush()
    original = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    return os.fdopen(original, "w", buffering=1)


def machine() -> dict[str, Any]:
    """What the figures were measured on: a shared machine's load explains a noisy p99."""
    load_1m, _, _ = os.getloadavg()
    return {
        "cpus": os.cpu_count(),
        "load_1m": round(load_1m, 2),
        "python": sys.version.split()[0],
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def progress(message: str) -> None:
    """Human progress on stderr; never mixed into the JSON on stdout."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run_and_print(
    arguments: argparse.Namespace,
    run: Callable[[bool, Profiler], dict[str, Any]],
    report: Callable[[dict[str, Any]], str],
) -> int:
    """A benchmark's ``main`` after parsing: run it (profiled with ``--profile``), stamp the wall time
    and the machine's load before and after, and print one JSON object (``--json``) or the report."""
    out = claim_stdout()
    started = time.monotonic()
    before = machine()
    profiler = Profiler(arguments.profile)
    result = run(arguments.quick, profiler)
    profiler.report()
    result["wall_s"] = round(time.monotonic() - started, 1)
    result["machine"] = before | {"load_1m_after": machine()["load_1m"]}
    if arguments.json:
        print_json(result, out)
    else:
        out.write(report(result))
    return 0


def print_json(result: Mapping[str, Any], stream: TextIO) -> None:
    stream.write(json.dumps(result, separators=(", ", ": ")) + "\n")
    stream.flush()


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain text table, for the human-readable output."""
    cells = [[str(c) for c in header], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


# ---- servers -------------------------------------------------------------------------------------------


def fake_aws_environment() -> None:
    """Fake credentials and no profile: nothing a benchmark does can reach a real AWS account."""
    os.environ["AWS_DEFAULT_REGION"] = AWS_REGION
    os.environ["AWS_REGION"] = AWS_REGION
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


@dataclass
class Servers:
    """Where the servers a benchmark uses answer; ``redis_server`` is set when we own Redis."""

    redis_url: str = ""
    mongo_uri: str = ""
    aws_endpoint: str = ""
    mongo_backend: str = ""
    redis_server: RedisServer | None = None
    started: list[str] = field(default_factory=list)


class BenchServers(AbstractContextManager["Servers"]):
    """Start the servers a benchmark needs, all at once, and stop them afterwards.

    Servers are launched together and then awaited, so the slow ones (moto's import, the MongoDB-wire
    server) start in parallel. ``BENCH_REDIS_URL``, ``MONGODB_URI`` and ``BENCH_AWS_ENDPOINT_URL``
    reuse servers that already run (``make up``) and skip the start-up. ``own_redis`` always starts a
    private Redis, for benchmarks that stop it (the snapshot tier).
    """

    def __init__(
        self, *, redis: bool = True, mongo: bool = False, aws: bool = False, own_redis: bool = False
    ) -> None:
        self._want_redis = redis
        self._want_mongo = mongo
        self._want_aws = aws
        self._own_redis = own_redis
        self._stack = ExitStack()

    def __enter__(self) -> Servers:
        servers = Servers()
        pending: list[RedisServer | MongoServer | MotoServer] = []
        try:
            if self._want_redis:
                reuse = os.environ.get(REDIS_URL_VARIABLE)
                if reuse and not self._own_redis:
                    servers.redis_url = reuse
                else:
                    servers.redis_server = RedisServer()
                    pending.append(servers.redis_server)
            if self._want_mongo:
                backend = choose_mongo_backend()
                servers.mongo_backend = backend
                mongo = MongoServer(backend=backend)
                if backend == "external":
                    servers.mongo_uri = mongo.uri
                else:
                    pending.append(mongo)
                    servers.mongo_uri = mongo.uri
            if self._want_aws:
                fake_aws_environment()
                reuse = os.environ.get(AWS_ENDPOINT_VARIABLE)
                if reuse:
                    servers.aws_endpoint = reuse
                else:
                    moto = MotoServer()
                    pending.append(moto)
                    servers.aws_endpoint = moto.url
                os.environ["AWS_ENDPOINT_URL"] = servers.aws_endpoint
            for server in pending:
                self._stack.callback(server.close)
                server.launch()
            for server in pending:
                server.wait_ready()
                servers.started.append(server.name)
        except BaseException:
            self._stack.close()
            raise
        if servers.redis_server is not None:
            servers.redis_url = servers.redis_server.url
        return servers

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()


# ---- traffic counters ----------------------------------------------------------------------------------


@dataclass
class Traffic:
    """Round trips (request flights), commands, statements inside them, and server time, while counting."""

    round_trips: int = 0
    commands: Counter[str] = field(default_factory=Counter)
    statements: Counter[str] = field(default_factory=Counter)
    duration_us: Counter[str] = field(default_factory=Counter)

    @property
    def command_count(self) -> int:
        return sum(self.commands.values())


class RedisTraffic:
    """Counts redis-py request flights: one ``send_packed_command`` is one round trip.

    A pipeline is one flight however many commands it carries; a health-check PING or a
    ``SCRIPT EXISTS`` before a pipeline is a flight of its own. Patches the connection class only
    inside :meth:`counting`, so timed runs are not slowed by the bookkeeping.
    """

    def __init__(self) -> None:
        self.traffic = Traffic()

    @contextmanager
    def counting(self) -> Iterator[Traffic]:
        self.traffic = Traffic()
        traffic = self.traffic
        connection_class: Any = redis.connection.AbstractConnection
        original_send_packed = connection_class.send_packed_command
        original_send = connection_class.send_command
        original_pack_many = connection_class.pack_commands

        def send_packed_command(self: Any, command: Any, check_health: bool = True) -> Any:
            traffic.round_trips += 1
            return original_send_packed(self, command, check_health)

        def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
            # A single command (a health-check PING included); it goes on through send_packed_command.
            traffic.commands[_command_name(args)] += 1
            return original_send(self, *args, **kwargs)

        def pack_commands(self: Any, commands: Any) -> Any:
            # A pipeline: packed here, sent in one send_packed_command.
            commands = list(commands)
            for args in commands:
                traffic.commands[_command_name(args)] += 1
            return original_pack_many(self, commands)

        connection_class.send_packed_command = send_packed_command
        connection_class.send_command = send_command
        connection_class.pack_commands = pack_commands
        try:
            yield traffic
        finally:
            connection_class.send_packed_command = original_send_packed
            connection_class.send_command = original_send
            connection_class.pack_commands = original_pack_many


def _command_name(args: Sequence[Any]) -> str:
    if not args:
        return "?"
    first = args[0]
    name = first.decode() if isinstance(first, bytes) else str(first)
    return name.upper()


class MongoCommands(pymongo.monitoring.CommandListener):
    """Counts MongoDB commands (each is one round trip) while :meth:`counting` is active.

    Register it with :func:`pymongo.monitoring.register` before any client is created: clients pick up
    global listeners when they are built.
    """

    def __init__(self) -> None:
        self.traffic = Traffic()
        self._active = False

    @contextmanager
    def counting(self) -> Iterator[Traffic]:
        self.traffic = Traffic()
        self._active = True
        try:
            yield self.traffic
        finally:
            self._active = False

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        if not self._active:
            return
        name = event.command_name
        self.traffic.round_trips += 1
        self.traffic.commands[name] += 1
        # A write command carries many statements (documents, updates, deletes) in one round trip.
        for field_name in ("documents", "updates", "deletes"):
            payload = event.command.get(field_name)
            if isinstance(payload, list):
                self.traffic.statements[name] += len(payload)

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        if self._active:
            self.traffic.duration_us[event.command_name] += event.duration_micros

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        if self._active:
            self.traffic.duration_us[f"{event.command_name} (failed)"] += event.duration_micros
