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

The plumbing lives in one module per concern (:mod:`.stats`, :mod:`.timing`, :mod:`.output`,
:mod:`.servers`, :mod:`.traffic`); every name is importable from ``bench.common`` as before.
"""

from __future__ import annotations

from bench.common.output import (
    Profiler,
    claim_stdout,
    format_table,
    machine,
    parser,
    print_json,
    progress,
    run_and_print,
)
from bench.common.servers import (
    AWS_ENDPOINT_VARIABLE,
    AWS_REGION,
    REDIS_URL_VARIABLE,
    BenchServers,
    Servers,
    fake_aws_environment,
)
from bench.common.stats import NS_PER_MS, Summary, per_second, percentile, ratio, summarize_ns
from bench.common.timing import interleave, measure, time_ns
from bench.common.traffic import MongoCommands, RedisTraffic, Traffic

__all__ = [
    "AWS_ENDPOINT_VARIABLE",
    "AWS_REGION",
    "NS_PER_MS",
    "REDIS_URL_VARIABLE",
    "BenchServers",
    "MongoCommands",
    "Profiler",
    "RedisTraffic",
    "Servers",
    "Summary",
    "Traffic",
    "claim_stdout",
    "fake_aws_environment",
    "format_table",
    "interleave",
    "machine",
    "measure",
    "parser",
    "per_second",
    "percentile",
    "print_json",
    "progress",
    "ratio",
    "run_and_print",
    "summarize_ns",
    "time_ns",
]
