"""The command line every benchmark shares, the profiler, and the output: one JSON object on a private
stdout (``--json``) or a plain text report; progress on stderr."""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TextIO


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
