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

import base64
import json
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import pymongo
import pymongo.monitoring
from aws_lambda_powertools.utilities.typing import LambdaContext as LambdaContextProtocol

from bench.common import (
    BenchServers,
    MongoCommands,
    Profiler,
    RedisTraffic,
    Servers,
    format_table,
    parser,
    per_second,
    progress,
    ratio,
    run_and_print,
    summarize_ns,
)
from infra.local.lambda_context import LambdaContext
from movierec.config import IngestSettings
from movierec.data.synthetic import GENRES, REGIONS
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import IngestService
from movierec.ingest.wiring import build_ingest_service
from movierec.observability import metrics
from tests.support import kinesis_event

SEED = 20_261_101
READ_BACK_CHUNK = 200
TARGET_RATIO = 0.5
HEADLINE_BATCH = 100
"""template.yaml's default IngestBatchSize: the headline figures are for this batch size."""

# Per-mille shares of a day's stream: mostly engagements, a few profile and catalogue changes.
MIX: tuple[tuple[str, int], ...] = (
    ("rating", 260),
    ("watch", 250),
    ("click", 180),
    ("impression", 120),
    ("search", 60),
    ("add_to_list", 50),
    ("signup", 30),
    ("profile", 20),
    ("movie_upsert", 25),
    ("movie_retire", 5),
)
ACTIVE_SESSIONS = 40
SESSION_CONTINUES = 0.75
"""The chance that an event belongs to a session already under way rather than a new one."""
WORDS = ("space", "opera", "heist", "love", "night", "city", "dragon", "war", "comedy", "detective")
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP", "NG", "SE", "MX")


@dataclass(frozen=True)
class Plan:
    users: int
    movies: int
    batches: dict[int, int]  # batch size -> timed batches
    warmup_batches: int  # of the smallest size, before anything is timed
    count_sizes: tuple[int, ...]  # batch sizes of the round-trip counting pass


# A real MongoDB (mongod on PATH, or MONGODB_URI) takes the full plan in its stride.
QUICK = Plan(
    users=20_000, movies=5_000, batches={100: 30, 1_000: 4}, warmup_batches=2, count_sizes=(10, 100, 1_000)
)
FULL = Plan(
    users=200_000,
    movies=20_000,
    batches={100: 200, 1_000: 25},
    warmup_batches=3,
    count_sizes=(10, 100, 1_000),
)
# The MongoDB-wire server (mongoeco) checks every inserted _id against every stored document, so a batch of
# n inserts costs O(n^2) and a 1,000-event batch takes over ten seconds: fewer batches, and none of 1,000
# in --quick (the counting pass still compares 10 with 100 events).
QUICK_WIRE = Plan(users=20_000, movies=5_000, batches={100: 10}, warmup_batches=1, count_sizes=(10, 100))
FULL_WIRE = Plan(
    users=200_000, movies=20_000, batches={100: 40, 1_000: 2}, warmup_batches=1, count_sizes=(10, 100, 1_000)
)
SLOW_BACKENDS = frozenset({"mongoeco"})
"""Backends whose insert cost grows with the collection: the stores are emptied after every batch."""
BENCH_MONGO_TIMEOUT_MS = 60_000
"""The wire server needs more than the production 2 s x 5 socket timeout for a 1,000-event insert."""


# ---- the workload ----------------------------------------------------------------------------------------


class Workload:
    """Seeded mixed events from many users.

    User activity is skewed (a few heavy users, a long tail) and comes in sessions: most events belong
    to one of the users active right now (a browse -> click -> watch -> rate burst), the rest start a new
    session. Kinesis partitions by user id, so a shard's batch sees the same users several times.
    Movie popularity is skewed too.
    """

    def __init__(self, plan: Plan, seed: int = SEED) -> None:
        self._rng = random.Random(seed)
        self._users = plan.users
        self._movies = plan.movies
        self._types = [kind for kind, _ in MIX]
        self._weights = [weight for _, weight in MIX]
        self._sessions = [self._new_user() for _ in range(ACTIVE_SESSIONS)]
        self._sequence = 1

    def _new_user(self) -> str:
        return f"u{int(self._users * self._rng.random() ** 2)}"

    def _user(self) -> str:
        slot = self._rng.randrange(ACTIVE_SESSIONS)
        if self._rng.random() >= SESSION_CONTINUES:
            self._sessions[slot] = self._new_user()
        return self._sessions[slot]

    def _movie(self) -> int:
        return 1 + int(self._movies * self._rng.random() ** 3)

    def event(self, now: float, kind: str | None = None) -> dict[str, Any]:
        rng = self._rng
        kind = kind or rng.choices(self._types, self._weights)[0]
        moment = datetime.fromtimestamp(now - rng.uniform(0, 900), UTC)
        document: dict[str, Any] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": kind,
            "schema_version": 1,
            "occurred_at": moment.isoformat(),
        }
        if kind in {"rating", "watch", "click", "add_to_list", "search", "impression", "signup", "profile"}:
            document["user_id"] = self._user()
        if kind in {"rating", "watch", "click", "add_to_list", "movie_upsert", "movie_retire"}:
            document["movie_id"] = self._movie()
        if kind == "rating":
            document["rating"] = rng.randint(1, 10) / 2
        elif kind == "watch":
            document["seconds_watched"] = rng.randint(30, 9_000)
            document["completion"] = round(rng.random(), 3)
        elif kind == "click":
            document["recommendation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            document["position"] = rng.randint(0, 20)
        elif kind == "impression":
            document["recommendation_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
            document["movie_ids"] = sorted({self._movie() for _ in range(10)})
            document["source"] = rng.choice(("personalized", "regional_popular", "global_popular"))
        elif kind == "search":
            document["query"] = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
        elif kind == "signup":
            document["region"] = rng.choice(REGIONS)
            document["country"] = rng.choice(COUNTRIES)
            document["locale"] = "en-US"
            document["birth_year"] = rng.randint(1940, 2010)
        elif kind == "profile":
            document["locale"] = rng.choice(("en-GB", "de-DE", "fr-FR", "pt-BR"))
            if rng.random() < 0.3:
                document["region"] = rng.choice(REGIONS)
        elif kind == "movie_upsert":
            document["title"] = (
                f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()} {rng.randint(1, 99)}"
            )
            document["genres"] = rng.sample(GENRES, rng.randint(1, 3))
            document["year"] = rng.randint(1920, 2026)
            document["cast"] = [f"Actor {rng.randint(1, 5_000)}" for _ in range(4)]
            document["plot"] = " ".join(rng.choices(WORDS, k=40))
        return document

    def kinesis_batch(self, size: int, *, every_type: bool = False) -> dict[str, Any]:
        """A batch of fresh events; ``every_type`` starts it with one event of each type."""
        now = time.time()
        kinds: list[str | None] = [*self._types] if every_type else []
        kinds += [None] * (size - len(kinds))
        payloads = [json.dumps(self.event(now, k), separators=(",", ":")).encode() for k in kinds[:size]]
        event = kinesis_event(payloads, first_sequence=self._sequence, arrival=now)
        self._sequence += size
        return event


# ---- the subject and the baseline ---------------------------------------------------------------------


@dataclass
class Rig:
    service: IngestService
    context: LambdaContextProtocol
    client: pymongo.MongoClient[dict[str, Any]]
    handler_db: pymongo.database.Database[dict[str, Any]]
    raw_events: pymongo.collection.Collection[dict[str, Any]]
    mongo: MongoCommands
    reset_between_batches: bool
    profiler: Profiler

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        with self.profiler.active():
            response = handle_stream_event(event, self.context, self.service.ingest)
            metrics.flush_metrics()  # what the deployed handler's @metrics.log_metrics does per invocation
        return dict(response)

    def stored_documents(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The documents the handler stored for a batch, in batch order (read back, untimed)."""
        ids = [doc["event_id"] for doc in records(event)]
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), READ_BACK_CHUNK):  # the wire server caps the size of $in
            chunk = ids[start : start + READ_BACK_CHUNK]
            found |= {doc["_id"]: doc for doc in self.handler_db["events"].find({"_id": {"$in": chunk}})}
        return [found[i] for i in ids if i in found]

    def reset(self) -> None:
        """Empty the MongoDB collections (indexes stay), so every batch meets the same state."""
        if self.reset_between_batches:
            for name in ("events", "users", "movies"):
                self.handler_db[name].delete_many({})
            self.raw_events.delete_many({})


def mongo_server_kind(servers: Servers) -> str:
    """The backend, telling the wire server apart even behind MONGODB_URI (it says so in buildInfo)."""
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        servers.mongo_uri, serverSelectionTimeoutMS=5_000
    )
    try:
        build = client.admin.command("buildInfo")
    finally:
        client.close()
    return "mongoeco" if build.get("gitVersion") == "mongoeco" else servers.mongo_backend


def build_rig(servers: Servers, mongo: MongoCommands, profiler: Profiler, *, slow: bool) -> Rig:
    suffix = uuid.uuid4().hex[:8]
    s3 = boto3.client("s3")
    sqs = boto3.client("sqs")
    bucket = f"movierec-bench-dlq-{suffix}"
    s3.create_bucket(Bucket=bucket)
    queue_url = sqs.create_queue(QueueName=f"movierec-bench-dlq-{suffix}")["QueueUrl"]
    overrides: dict[str, Any] = {"mongodb_timeout_ms": BENCH_MONGO_TIMEOUT_MS} if slow else {}
    settings = IngestSettings(
        mongodb_uri=servers.mongo_uri,
        mongodb_database=f"bench_ingest_{suffix}",
        redis_url=servers.redis_url,
        dead_letter_queue_url=queue_url,
        dead_letter_bucket=bucket,
        **overrides,
    )
    service = build_ingest_service(settings)  # the Lambda's composition root, as functions/ingest uses it
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        servers.mongo_uri,
        retryWrites=False,
        tz_aware=True,
        appname="movierec-bench",
        socketTimeoutMS=BENCH_MONGO_TIMEOUT_MS * 5,
    )
    context = LambdaContext(
        function_name="movierec-bench-ingest",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:movierec-bench-ingest",
        timeout_s=900,
    )
    return Rig(
        service=service,
        # infra.local's LambdaContext mirrors the runtime's attribute for attribute.
        context=cast(LambdaContextProtocol, context),
        client=client,
        handler_db=client[settings.mongodb_database],
        raw_events=client[f"bench_raw_{suffix}"]["events"],
        mongo=mongo,
        reset_between_batches=slow,
        profiler=profiler,
    )


def records(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]]


def distinct_users(event: dict[str, Any]) -> int:
    return len({doc["user_id"] for doc in records(event) if "user_id" in doc})


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
