"""Fault injection: a store stopped while the local event-source mapping drains a stream loses no event.

The local Kinesis mapping (``infra.local.kinesis``) drives the ingest service over moto's Kinesis; a
store is stopped from a pymongo ``CommandListener`` at a chosen insert, so that some batches exhaust
their retries and go to the on-failure queue; the store is restarted from the mapping's loop (just
before a chosen invocation), and ``infra.ops.replay`` then replays the queue. Nothing waits on
a clock: every stop and start is triggered by a counted command or invocation.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pymongo.monitoring

from infra.local.kinesis import KinesisPoller, PollStats
from infra.local.servers import MongoServer, RedisServer
from infra.local.template import KinesisSource
from infra.ops.failure_queue import FailureQueue
from infra.ops.replay import replay_queue
from infra.ops.stream_reader import KinesisRangeReader
from movierec.ingest.processor import handle_stream_event
from tests.integration.ingest_harness import Harness, build_harness
from tests.support import event_payload, kinesis_event
from training_job.stores.stream import KinesisStream

STREAM = "movierec-test-faults"
BATCH = 50
RETRIES = 1  # each batch is attempted twice before it goes to the on-failure queue
DOOMED_BATCHES = 3  # batches let exhaust their retries while the store is down


def seeded_events(count: int, users: int) -> list[tuple[bytes, str]]:
    """(payload, partition key): signups, then ratings and watches; deterministic, distinct ids."""
    records: list[tuple[bytes, str]] = []
    for n in range(count):
        user = f"u{n % users}"
        if n < users:
            payload = event_payload("signup", n, user_id=user, region=["EU", "US", "APAC"][n % 3])
        elif n % 3:
            payload = event_payload("rating", n, user_id=user, movie_id=1 + n % 97, rating=0.5 + (n % 10) / 2)
        else:
            payload = event_payload(
                "watch", n, user_id=user, movie_id=1 + n % 89, seconds_watched=60 + n, completion=0.5
            )
        records.append((payload, user))
    return records


def event_id(payload: bytes) -> str:
    return str(json.loads(payload)["event_id"])


class StopAfterInserts(pymongo.monitoring.CommandListener):
    """Runs ``stop`` once the ``count``-th insert command has succeeded: a crash in mid-batch."""

    def __init__(self, count: int, stop: Callable[[], object]) -> None:
        self.remaining = count
        self.stop = stop

    def started(self, event: pymongo.monitoring.CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: pymongo.monitoring.CommandSucceededEvent) -> None:
        if self.remaining > 0 and event.command_name == "insert":
            self.remaining -= 1
            if self.remaining == 0:
                self.stop()

    def failed(self, event: pymongo.monitoring.CommandFailedEvent) -> None:
        pass


class FlakyFunction:
    """The ingest function as the mapping invokes it; restarts the store after ``doomed`` batches.

    A batch fails as a whole while its store is down (every record in batchItemFailures), so after
    ``doomed * (RETRIES + 1)`` failed invocations that many batches have gone to the on-failure queue.
    """

    def __init__(self, harness: Harness, doomed: int, start: Callable[[], object]) -> None:
        self.harness = harness
        self.failures_left = self.allowed_failures = doomed * (RETRIES + 1)
        self.start = start
        self.restarted = False
        self.applied_before_failure: list[str] = []  # event ids of batches that succeeded before any failure

    def __call__(self, event: dict[str, Any]) -> Any:
        if self.failures_left == 0 and not self.restarted:
            self.start()  # between two invocations of the mapping's loop
            self.restarted = True
        response = handle_stream_event(event, None, self.harness.service.ingest)
        if response["batchItemFailures"]:
            assert not self.restarted, "a batch failed after the store came back"
            assert len(response["batchItemFailures"]) == len(event["Records"])
            self.failures_left -= 1
        elif self.failures_left == self.allowed_failures:
            self.applied_before_failure += [
                event_id(base64.b64decode(r["kinesis"]["data"])) for r in event["Records"]
            ]
        return response


def make_poller(
    harness: Harness, kinesis: Any, sqs: Any, invoke: Callable[[dict[str, Any]], Any], state_dir: Path
) -> KinesisPoller:
    arn = str(kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]["StreamARN"])
    queue_arn = sqs.get_queue_attributes(QueueUrl=harness.queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    source = KinesisSource(
        function_id="IngestFunction",
        stream_name=STREAM,
        stream_arn=arn,
        batch_size=BATCH,
        report_batch_item_failures=True,
        max_retry_attempts=RETRIES,
        on_failure_arn=queue_arn,
    )
    return KinesisPoller(source, invoke, kinesis=kinesis, sqs=sqs, state_dir=state_dir, log=lambda _: None)


def put_stream(records: list[tuple[bytes, str]]) -> Any:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=1)
    assert KinesisStream(STREAM, kinesis, sleep=lambda _: None).put(records) == len(records)
    return kinesis


def drain_cleanly(harness: Harness, kinesis: Any, sqs: Any, state_dir: Path) -> PollStats:
    """The whole stream once, through the same mapping, into ``harness``: the reference run."""
    poller = make_poller(
        harness,
        kinesis,
        sqs,
        lambda event: handle_stream_event(event, None, harness.service.ingest),
        state_dir,
    )
    stats = poller.drain()
    assert stats.records_dead_lettered == 0
    return stats


def replay_until_empty(harness: Harness, kinesis: Any, sqs: Any) -> int:
    """Runs the replay until the on-failure queue is empty; returns the records replayed."""
    replayed = 0
    for _ in range(10):
        summary = replay_queue(
            FailureQueue(harness.queue_url, sqs),
            {"kinesis": KinesisRangeReader(kinesis)},
            harness.service.ingest,
        )
        assert summary.errors == [], summary.as_dict()
        assert summary.messages_left == 0, summary.as_dict()
        if summary.messages_received == 0:
            return replayed
        replayed += summary.records
    raise AssertionError("the on-failure queue never emptied")


def drain_through_the_outage(
    poller: KinesisPoller, listener: StopAfterInserts, function: FlakyFunction
) -> None:
    """Drains the stream while the store goes down and comes back: the doomed batches reach the queue."""
    stats = poller.drain()
    assert listener.remaining == 0, "the store was stopped during the drain"
    assert function.restarted
    assert (stats.batches_dead_lettered, stats.records_dead_lettered) == (
        DOOMED_BATCHES,
        DOOMED_BATCHES * BATCH,
    )


def stored_ids(harness: Harness) -> list[str]:
    return [str(doc["_id"]) for doc in harness.mongo["events"].find({}, {"_id": 1})]


def test_mongodb_stopped_mid_poll_loses_no_event_and_applies_none_twice(
    disposable_mongo: MongoServer,
    mongo_uri: str,
    mongo_database_name: str,
    redis_url: str,
    aws_reset: str,
    tmp_path: Path,
) -> None:
    records = seeded_events(3000, users=60)
    kinesis = put_stream(records)
    sqs = boto3.client("sqs")
    reference = build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)
    drain_cleanly(reference, kinesis, sqs, tmp_path / "reference")
    expected = reference.state()
    assert len(expected["events"]) == len(records)

    # One insert command per batch (the raw events): the stop lands after batch 12's events are stored,
    # before its counters are written.
    listener = StopAfterInserts(12, disposable_mongo.stop)
    harness = build_harness(
        disposable_mongo.uri, "faults", redis_url, aws_endpoint=aws_reset, mongo_listeners=[listener]
    )
    function = FlakyFunction(harness, DOOMED_BATCHES, disposable_mongo.start)
    poller = make_poller(harness, kinesis, sqs, function, tmp_path / "faulty")

    drain_through_the_outage(poller, listener, function)

    stored = set(stored_ids(harness))
    # Batch 12's raw events reached MongoDB before the crash; the two batches after it did not.
    assert len(stored) == len(records) - (DOOMED_BATCHES - 1) * BATCH
    assert harness.state() != expected  # batch 12's effects and two whole batches are missing
    assert poller.drain().invocations == 0  # the mapping is past them: only the replay brings them back

    assert replay_until_empty(harness, kinesis, sqs) == DOOMED_BATCHES * BATCH

    ids = stored_ids(harness)
    assert len(ids) == len(set(ids)) == len(records)
    assert set(ids) == {event_id(payload) for payload, _ in records}
    actual = harness.state()
    assert actual["users"] == expected["users"]  # counters: every event counted exactly once
    assert actual["movies"] == expected["movies"]
    assert actual["cache"] == expected["cache"]
    assert actual == expected
    assert replay_until_empty(harness, kinesis, sqs) == 0  # nothing is left to replay


def test_redis_stopped_mid_poll_converges_after_replay_and_rebuild(
    disposable_redis: RedisServer,
    mongo_uri: str,
    mongo_database_name: str,
    redis_url: str,
    aws_reset: str,
    tmp_path: Path,
) -> None:
    records = seeded_events(600, users=30)
    kinesis = put_stream(records)
    sqs = boto3.client("sqs")

    listener = StopAfterInserts(6, disposable_redis.stop)
    harness = build_harness(
        mongo_uri,
        mongo_database_name,
        disposable_redis.url,
        aws_endpoint=aws_reset,
        mongo_listeners=[listener],
    )
    function = FlakyFunction(harness, DOOMED_BATCHES, disposable_redis.start)
    poller = make_poller(harness, kinesis, sqs, function, tmp_path / "faulty")

    drain_through_the_outage(poller, listener, function)

    # MongoDB took every batch's raw events (it was up throughout); Redis failed three batches.
    assert len(stored_ids(harness)) == len(records)
    assert replay_until_empty(harness, kinesis, sqs) == DOOMED_BATCHES * BATCH
    actual = harness.state()

    # Redis restarts empty (no persistence): what the five batches before the stop wrote to it is gone,
    # and ingest cannot know, since those events were acknowledged. So after the replay Redis equals the
    # state the events applied *after* the stop give, the doomed batches included, applied once to empty
    # stores; MongoDB, which lost nothing, equals the reference for the whole stream. Then the rebuild
    # re-derives Redis from MongoDB's events, on top of what is there: Redis equals the reference too.
    lost = set(function.applied_before_failure)
    assert len(lost) == 5 * BATCH
    reference = build_harness(
        mongo_uri, "reference_" + mongo_database_name, redis_url, aws_endpoint=aws_reset
    )
    try:
        rest = [r for r in records if event_id(r[0]) not in lost]
        survivors = [r for r in records if event_id(r[0]) in lost]
        for start in range(0, len(rest), BATCH):
            handle_stream_event(
                kinesis_event([p for p, _ in rest[start : start + BATCH]]), None, reference.service.ingest
            )
        expected_cache = reference.state()["cache"]
        for start in range(0, len(survivors), BATCH):
            handle_stream_event(
                kinesis_event(
                    [p for p, _ in survivors[start : start + BATCH]], first_sequence=10_000 + start
                ),
                None,
                reference.service.ingest,
            )
        expected = reference.state()
    finally:
        reference.mongo.client.drop_database("reference_" + mongo_database_name)

    assert actual["cache"] == expected_cache
    assert {k: actual[k] for k in ("users", "movies", "events")} == {
        k: expected[k] for k in ("users", "movies", "events")
    }
    assert actual["cache"] != expected["cache"]  # the loss is real until the rebuild

    summary = harness.rebuild_realtime(page_size=70)
    assert (summary.events, summary.unreadable) == (len(records), 0)
    assert harness.state() == expected
    harness.rebuild_realtime()  # again, as an operator might: nothing counts twice
    assert harness.state() == expected
