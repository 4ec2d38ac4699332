"""The ingest benchmark's subject and baseline (``python -m bench.ingest``): the Lambda's own ingest service
over real servers, the plain collection the raw ``insert_many`` goes to, and the stores' reset."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any, cast

import boto3
import pymongo
import pymongo.monitoring
from aws_lambda_powertools.utilities.typing import LambdaContext as LambdaContextProtocol

from bench.common import MongoCommands, Profiler, Servers
from infra.local.lambda_context import LambdaContext
from movierec.config import IngestSettings
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import IngestService
from movierec.ingest.wiring import build_ingest_service
from movierec.observability import metrics

READ_BACK_CHUNK = 200
BENCH_MONGO_TIMEOUT_MS = 60_000
"""The wire server needs more than the production 2 s x 5 socket timeout for a 1,000-event insert."""


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
