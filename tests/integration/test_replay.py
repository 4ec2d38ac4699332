"""Replaying exhausted Kinesis batches: moto's Kinesis and SQS, real MongoDB and Redis.

The on-failure messages come from the local event-source mapping (``infra.local.kinesis``), which
writes AWS's exact ``KinesisBatchInfo`` shape, or are built the same way for a chosen range.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local.kinesis import KinesisPoller, kinesis_event
from infra.local.kinesis import StreamRecord as LocalRecord
from infra.local.template import KinesisSource
from infra.ops.failure_queue import FailureQueue
from infra.ops.replay import BatchFailure, main, parse_failure, replay, replay_queue
from infra.ops.stream_reader import KinesisRangeReader, RecordsUnavailableError, StreamRange
from movierec.contracts import StreamRecord
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import BatchResult
from movierec.stores import aws
from tests.integration.ingest_harness import Harness
from tests.support import event_payload
from training_job.stores.stream import KinesisStream

STREAM = "movierec-test-replay"
EVENTS = 300
USERS = 40


@pytest.fixture
def kinesis(harness: Harness) -> Any:
    client = boto3.client("kinesis")
    client.create_stream(StreamName=STREAM, ShardCount=2)
    return client


@pytest.fixture
def sqs(harness: Harness) -> Any:
    return boto3.client("sqs")


def stream_arn(kinesis: Any) -> str:
    return str(kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"])


def seeded_events() -> list[tuple[bytes, str]]:
    """(payload, partition key): signups, then ratings and watches, deterministic."""
    records: list[tuple[bytes, str]] = []
    for n in range(EVENTS):
        user = f"u{n % USERS}"
        if n < USERS:
            payload = event_payload("signup", n, user_id=user, region=["EU", "US"][n % 2])
        elif n % 3:
            payload = event_payload("rating", n, user_id=user, movie_id=1 + n % 37, rating=0.5 + (n % 10) / 2)
        else:
            payload = event_payload(
                "watch", n, user_id=user, movie_id=1 + n % 29, seconds_watched=60 * n, completion=0.5
            )
        records.append((payload, user))
    return records


def put_events(kinesis: Any) -> list[tuple[bytes, str]]:
    records = seeded_events()
    assert KinesisStream(STREAM, kinesis, sleep=lambda _: None).put(records) == EVENTS
    return records


def span_of(arn: str, shard_id: str, rows: Sequence[dict[str, Any]]) -> StreamRange:
    """The range of ``rows`` (consecutive records of one shard), as an on-failure message names it."""
    first, last = int(rows[0]["SequenceNumber"]), int(rows[-1]["SequenceNumber"])
    return StreamRange("kinesis", arn, shard_id, first, last, size=len(rows))


def shard_contents(kinesis: Any) -> dict[str, list[dict[str, Any]]]:
    """Every record of every shard, as GetRecords returns them."""
    contents: dict[str, list[dict[str, Any]]] = {}
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        rows: list[dict[str, Any]] = []
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            rows += page["Records"]
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
        contents[shard["ShardId"]] = rows
    return contents


def batch_info_message(arn: str, shard_id: str, rows: list[dict[str, Any]]) -> str:
    """An on-failure message for ``rows`` (one shard's, in order), as the local mapping writes it."""
    return json.dumps(
        {
            "requestContext": {
                "requestId": "c0ffee",
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:IngestFunction",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 3,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": "2026-11-01T12:00:00.000Z",
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": rows[0]["SequenceNumber"],
                "endSequenceNumber": rows[-1]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": "2026-11-01T12:00:00.000Z",
                "approximateArrivalOfLastRecord": "2026-11-01T12:00:01.000Z",
                "batchSize": len(rows),
                "streamArn": arn,
            },
        }
    )


def stored_event_ids(harness: Harness) -> list[str]:
    return [str(doc["_id"]) for doc in harness.mongo["events"].find({}, {"_id": 1})]


def ids_of(rows: list[dict[str, Any]]) -> set[str]:
    return {json.loads(bytes(row["Data"]))["event_id"] for row in rows}


def queue_bodies(sqs: Any, queue_url: str) -> list[str]:
    """What is visible in the queue now, left visible (the replay released what it kept)."""
    response = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=0
    )
    return [str(m["Body"]) for m in response.get("Messages", [])]


def test_a_chosen_range_is_replayed_exactly_once(harness: Harness, kinesis: Any, sqs: Any) -> None:
    put_events(kinesis)
    shards = shard_contents(kinesis)
    shard_id, rows = max(shards.items(), key=lambda item: len(item[1]))
    assert sum(len(r) for r in shards.values()) == EVENTS
    assert len(rows) > 120
    chosen = rows[17:137]
    poison = json.dumps({"reason": "invalid_schema", "detail": "x", "payload_b64": "e30="})
    sqs.send_message(QueueUrl=harness.queue_url, MessageBody=poison)
    sqs.send_message(
        QueueUrl=harness.queue_url, MessageBody=batch_info_message(stream_arn(kinesis), shard_id, chosen)
    )

    queue = FailureQueue(harness.queue_url, sqs)
    readers = {"kinesis": KinesisRangeReader(kinesis, page_limit=25)}  # several pages per range
    summary = replay_queue(queue, readers, harness.service.ingest, max_messages=5, chunk_size=50)

    assert summary.as_dict() == {
        "messages_received": 2,
        "messages_replayed": 1,
        "messages_left": 0,
        "messages_ignored": 1,
        "records": len(chosen),
        "failed_records": 0,
        "errors": [],
    }
    stored = stored_event_ids(harness)
    assert len(stored) == len(set(stored)) == len(chosen)
    assert set(stored) == ids_of(chosen)
    assert queue_bodies(sqs, harness.queue_url) == [poison]  # the poison record is left as it was

    # Replaying the same range again (a message delivered twice) changes nothing at all.
    before = harness.state()
    failure = parse_failure(batch_info_message(stream_arn(kinesis), shard_id, chosen))
    assert isinstance(failure, BatchFailure)
    (again,) = replay([failure], readers, harness.service.ingest, chunk_size=7)
    assert again.done
    assert again.records == len(chosen)
    assert harness.state() == before


def test_batches_the_mapping_gave_up_on_are_replayed(
    harness: Harness, kinesis: Any, sqs: Any, tmp_path: Path
) -> None:
    """End to end: the local mapping exhausts a batch while a store is 'down', the replay recovers it."""
    put_events(kinesis)
    rows = shard_contents(kinesis)
    doomed_shard = sorted(rows)[0]
    # The first batch of 50 of one shard fails (moto numbers each shard's records from 1: match the shard).
    doomed = {f"{doomed_shard}:{rows[doomed_shard][0]['SequenceNumber']}"}
    queue_arn = sqs.get_queue_attributes(QueueUrl=harness.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]

    def invoke(event: dict[str, Any]) -> Any:
        if any(r["eventID"] in doomed for r in event["Records"]):
            raise RuntimeError("MongoDB is down")  # a function error on every attempt at this batch
        return handle_stream_event(event, None, harness.service.ingest)

    source = KinesisSource(
        function_id="IngestFunction",
        stream_name=STREAM,
        stream_arn=stream_arn(kinesis),
        batch_size=50,
        report_batch_item_failures=True,
        max_retry_attempts=2,
        on_failure_arn=queue_arn,
    )
    poller = KinesisPoller(source, invoke, kinesis=kinesis, sqs=sqs, state_dir=tmp_path, log=lambda _: None)
    stats = poller.drain()
    assert stats.batches_dead_lettered == 1
    assert stats.records_dead_lettered == 50
    missing = {json.loads(p)["event_id"] for p, _ in seeded_events()} - set(stored_event_ids(harness))
    assert len(missing) == 50

    summary = replay_queue(
        FailureQueue(harness.queue_url, sqs), {"kinesis": KinesisRangeReader(kinesis)}, harness.service.ingest
    )
    assert (summary.messages_replayed, summary.messages_left, summary.records) == (1, 0, 50)
    stored = stored_event_ids(harness)
    assert len(stored) == len(set(stored)) == EVENTS
    assert queue_bodies(sqs, harness.queue_url) == []

    before = harness.state()
    assert (
        replay_queue(
            FailureQueue(harness.queue_url, sqs),
            {"kinesis": KinesisRangeReader(kinesis)},
            harness.service.ingest,
        ).messages_received
        == 0
    )
    assert harness.state() == before


class TrimmedKinesis:
    """moto's Kinesis as it is once retention has trimmed every record below ``horizon``."""

    def __init__(self, client: Any, horizon: int) -> None:
        self._client = client
        self._horizon = horizon

    def get_shard_iterator(self, **kwargs: Any) -> Any:
        return self._client.get_shard_iterator(**kwargs)

    def get_records(self, **kwargs: Any) -> Any:
        page = self._client.get_records(**kwargs)
        page["Records"] = [r for r in page["Records"] if int(r["SequenceNumber"]) >= self._horizon]
        return page


def test_a_trimmed_range_raises_and_its_message_stays(harness: Harness, kinesis: Any, sqs: Any) -> None:
    put_events(kinesis)
    shard_id, rows = next(iter(shard_contents(kinesis).items()))
    chosen = rows[5:30]
    arn = stream_arn(kinesis)
    trimmed = TrimmedKinesis(kinesis, horizon=int(rows[10]["SequenceNumber"]))

    with pytest.raises(RecordsUnavailableError, match="trimmed past retention"):
        KinesisRangeReader(trimmed).read(span_of(arn, shard_id, chosen))

    message = batch_info_message(arn, shard_id, chosen)
    sqs.send_message(QueueUrl=harness.queue_url, MessageBody=message)
    summary = replay_queue(
        FailureQueue(harness.queue_url, sqs), {"kinesis": KinesisRangeReader(trimmed)}, harness.service.ingest
    )
    assert (summary.messages_replayed, summary.messages_left, summary.records) == (0, 1, 0)
    assert "no longer available" in summary.errors[0]
    assert stored_event_ids(harness) == []  # nothing of a partial range was ingested
    assert queue_bodies(sqs, harness.queue_url) == [message]


def test_a_deleted_stream_raises_and_the_cli_exits_non_zero(
    harness: Harness,
    kinesis: Any,
    sqs: Any,
    mongo_uri: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_events(kinesis)
    shard_id, rows = next(iter(shard_contents(kinesis).items()))
    arn = stream_arn(kinesis)
    message = batch_info_message(arn, shard_id, rows[:10])
    kinesis.delete_stream(StreamName=STREAM)
    with pytest.raises(RecordsUnavailableError, match="ResourceNotFoundException"):
        KinesisRangeReader(kinesis).read(span_of(arn, shard_id, rows[:10]))

    sqs.send_message(QueueUrl=harness.queue_url, MessageBody=message)
    monkeypatch.setenv("MONGODB_URI", mongo_uri)
    monkeypatch.setenv("MONGODB_DATABASE", harness.mongo.name)
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("DEAD_LETTER_QUEUE_URL", harness.queue_url)
    monkeypatch.setenv("DEAD_LETTER_BUCKET", "movierec-test-artifacts")
    aws.client.cache_clear()  # clients for this test's endpoint
    try:
        assert main(["--queue-url", harness.queue_url, "--max-messages", "3"]) == 1
    finally:
        aws.client.cache_clear()
    printed = json.loads(capsys.readouterr().out)
    assert (printed["messages_received"], printed["messages_left"]) == (1, 1)
    assert queue_bodies(sqs, harness.queue_url) == [message]


def test_records_read_back_are_those_the_function_receives(harness: Harness, kinesis: Any) -> None:
    put_events(kinesis)
    shard_id, rows = next(iter(shard_contents(kinesis).items()))
    arn = stream_arn(kinesis)
    read = KinesisRangeReader(kinesis).read(span_of(arn, shard_id, rows[3:13]))
    event = kinesis_event(
        [LocalRecord.from_get_records(row) for row in rows[3:13]],
        shard_id=shard_id,
        stream_arn=arn,
        invoke_identity_arn="arn:aws:iam::123456789012:role/IngestFunctionRole",
    )
    delivered: list[StreamRecord] = []

    def capture(records: Sequence[StreamRecord]) -> BatchResult:
        delivered.extend(records)
        return BatchResult()

    handle_stream_event(event, None, capture)
    assert [(r.record_id, r.source, r.payload, r.metadata) for r in read] == [
        (r.record_id, r.source, r.payload, r.metadata) for r in delivered
    ]
    assert [r.arrival_epoch for r in read] == pytest.approx([r.arrival_epoch for r in delivered], abs=1e-3)
