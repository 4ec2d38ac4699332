"""Ingest throughput: events/second through the Lambda's handler path vs a raw ``insert_many``.

``python -m bench.ingest [--quick] [--json] [--profile FILE]``

The subject is ``movierec.ingest.processor.handle_stream_event`` (Powertools batch processing, decode
and validation, MongoDB bulk writes, the Redis pipelines, metrics) driving an ``IngestService`` built by
the Lambda's own composition root (``build_ingest_service``) over real servers: Redis, the MongoDB-wire
server (or mongod / MONGODB_URI) and moto for the dead-letter queue. Kinesis batches of 100 and 1,000
mixed events from many users are fed one after another, each batch fresh (first delivery).

The baseline, measured in the same run right after each handler batch, is ``insert_many`` of the very
documents the handler stored for that batch (read back untimed) into a plain collection on the same
server. ``ratio = handler_events_per_s / raw_insert_docs_per_s``; the target is >= 0.5.

With the MongoDB-wire server (mongoeco), whose inserts cost O(documents in the collection), both sides'
collections are emptied (untimed) after every batch, so every batch and its baseline meet the same,
empty, state; a real MongoDB (mongod on PATH, or MONGODB_URI) keeps its data and gets the larger plan.

A separate counting pass runs one more batch of each size with a pymongo CommandListener and a
redis-py connection patch, and reports MongoDB commands and Redis round trips per batch: they must
not grow with the batch size (no per-record round trip).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pymongo
import pymongo.monitoring

from bench.common import (
    BenchServers,
    MongoCommands,
    Profiler,
    RedisTraffic,
    format_table,
    parser,
    per_second,
    progress,
    ratio,
    run_and_print,
    summarize_ns,
)
from bench.ingest_rig import Rig, build_rig, distinct_users, mongo_server_kind
from bench.ingest_workload import FULL, FULL_WIRE, QUICK, QUICK_WIRE, Workload

TARGET_RATIO = 0.5
HEADLINE_BATCH = 100
"""template.yaml's default IngestBatchSize: the headline figures are for this batch size."""
SLOW_BACKENDS = frozenset({"mongoeco"})
"""Backends whose insert cost grows with the collection: the stores are emptied after every batch."""


def run_batch(rig: Rig, event: dict[str, Any], size: int) -> tuple[int, int, Counter[str]]:
    """One handler batch, then the raw insert of what it stored: (handler ns, raw ns, mongo time)."""
    with rig.mongo.counting() as seen:
        started = time.perf_counter_ns()
        response = rig.handle(event)
        handler_ns = time.perf_counter_ns() - started
    failures = response.get("batchItemFailures", [])
    if failures:
        raise RuntimeError(f"{len(failures)} of {size} records failed; the run is not valid")
    documents = rig.stored_documents(event)
    if len(documents) != size:
        raise RuntimeError(f"the handler stored {len(documents)} of {size} events")
    started = time.perf_counter_ns()
    rig.raw_events.insert_many(documents, ordered=False)
    raw_ns = time.perf_counter_ns() - started
    rig.reset()
    return handler_ns, raw_ns, seen.duration_us


def run_size(rig: Rig, workload: Workload, size: int, timed: int) -> dict[str, Any]:
    handler_ns: list[int] = []
    raw_ns: list[int] = []
    mongo_us: Counter[str] = Counter()
    users = 0
    for _ in range(timed):
        event = workload.kinesis_batch(size)
        users += distinct_users(event)
        handler, raw, server = run_batch(rig, event, size)
        handler_ns.append(handler)
        raw_ns.append(raw)
        mongo_us.update(server)
    handler_summary = summarize_ns(handler_ns)
    raw_summary = summarize_ns(raw_ns)
    handler_rate = per_second(size * timed, sum(handler_ns))
    raw_rate = per_second(size * timed, sum(raw_ns))
    mongo_ms = {name: round(us / 1000 / timed, 2) for name, us in sorted(mongo_us.items())}
    handler_mean_ms = handler_summary.mean_ms
    return {
        "batches": timed,
        "distinct_users_per_batch": round(users / timed, 1),
        "handler_events_per_s": round(handler_rate, 1),
        "raw_insert_docs_per_s": round(raw_rate, 1),
        "ratio": ratio(handler_rate, raw_rate),
        "batch_p50_ms": round(handler_summary.p50_ms, 2),
        "batch_p99_ms": round(handler_summary.p99_ms, 2),
        "batch_mean_ms": round(handler_mean_ms, 2),
        "raw_batch_p50_ms": round(raw_summary.p50_ms, 2),
        "raw_batch_p99_ms": round(raw_summary.p99_ms, 2),
        # Where a handler batch's time goes: MongoDB's time per command, and everything else
        # (decoding, validation, Redis, Powertools) as the remainder.
        "mongo_ms_per_batch": mongo_ms,
        "other_ms_per_batch": round(handler_mean_ms - sum(mongo_ms.values()), 2),
    }


def count_round_trips(rig: Rig, workload: Workload, sizes: Sequence[int]) -> dict[str, Any]:
    """One more batch per size, with MongoDB commands and Redis round trips counted."""
    redis_traffic = RedisTraffic()
    per_size: dict[str, Any] = {}
    for size in sizes:
        event = workload.kinesis_batch(size, every_type=True)  # every collection and script is used
        with rig.mongo.counting() as mongo_seen, redis_traffic.counting() as redis_seen:
            rig.handle(event)
        rig.reset()
        per_size[str(size)] = {
            "mongo_round_trips": mongo_seen.round_trips,
            "mongo_commands": dict(sorted(mongo_seen.commands.items())),
            "mongo_statements": dict(sorted(mongo_seen.statements.items())),
            "redis_round_trips": redis_seen.round_trips,
            "redis_commands": dict(sorted(redis_seen.commands.items())),
        }
    smallest, largest = per_size[str(min(sizes))], per_size[str(max(sizes))]
    grows = (
        largest["mongo_round_trips"] > smallest["mongo_round_trips"]
        or largest["redis_round_trips"] > smallest["redis_round_trips"]
    )
    return {"by_batch_size": per_size, "round_trips_grow_with_batch_size": grows}


def run(quick: bool, profiler: Profiler) -> dict[str, Any]:
    mongo = MongoCommands()
    pymongo.monitoring.register(mongo)  # before any client exists, so every client reports to it
    with BenchServers(redis=True, mongo=True, aws=True) as servers:
        progress(f"servers ready (started: {', '.join(servers.started) or 'none, all reused'})")
        backend = mongo_server_kind(servers)
        slow = backend in SLOW_BACKENDS
        plan = (QUICK_WIRE if quick else FULL_WIRE) if slow else (QUICK if quick else FULL)
        rig = build_rig(servers, mongo, profiler, slow=slow)
        workload = Workload(plan)
        smallest = min(plan.batches)
        for _ in range(plan.warmup_batches):  # index creation, script loading, connections, imports
            run_batch(rig, workload.kinesis_batch(smallest), smallest)
        sizes: dict[str, Any] = {}
        for size, timed in plan.batches.items():
            progress(f"{timed} timed batches of {size}")
            sizes[str(size)] = run_size(rig, workload, size, timed)
        progress(f"counting round trips for batches of {', '.join(map(str, plan.count_sizes))}")
        round_trips = count_round_trips(rig, workload, plan.count_sizes)
        rig.client.close()
    headline = sizes[str(HEADLINE_BATCH)]
    skipped = sorted({100, 1_000} - set(plan.batches))
    return {
        "handler_events_per_s": headline["handler_events_per_s"],
        "raw_insert_docs_per_s": headline["raw_insert_docs_per_s"],
        "ratio": headline["ratio"],
        "batch_p50_ms": headline["batch_p50_ms"],
        "batch_p99_ms": headline["batch_p99_ms"],
        "headline_batch_size": HEADLINE_BATCH,
        "batch_sizes": sizes,
        "skipped_batch_sizes": {
            str(size): "the MongoDB-wire server's inserts are O(n^2) per batch; run without --quick"
            for size in skipped
        },
        "round_trips": round_trips,
        "target_ratio": TARGET_RATIO,
        "meets_target": all((s["ratio"] or 0) >= TARGET_RATIO for s in sizes.values()),
        "mongo_backend": backend,
        "stores_reset_between_batches": rig.reset_between_batches,
        "mode": "quick" if quick else "full",
    }


def report(result: dict[str, Any]) -> str:
    counts = result["round_trips"]["by_batch_size"]
    rows = [
        [
            size,
            detail["handler_events_per_s"],
            detail["raw_insert_docs_per_s"],
            detail["ratio"],
            detail["batch_p50_ms"],
            detail["batch_p99_ms"],
            detail["other_ms_per_batch"],
        ]
        for size, detail in result["batch_sizes"].items()
    ]
    table = format_table(
        rows, ["batch", "handler ev/s", "raw docs/s", "ratio", "p50 ms", "p99 ms", "non-Mongo ms"]
    )
    trips = format_table(
        [[size, c["mongo_round_trips"], c["redis_round_trips"]] for size, c in counts.items()],
        ["batch", "MongoDB commands", "Redis round trips"],
    )
    headline = f"headline (batch {HEADLINE_BATCH}): ratio {result['ratio']} (target >= {TARGET_RATIO})"
    return f"{table}\n\n{trips}\n{headline}\n"


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser("python -m bench.ingest", __doc__ or "").parse_args(argv)
    return run_and_print(arguments, run, report)


if __name__ == "__main__":
    sys.exit(main())
