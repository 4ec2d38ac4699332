"""Replaying exhausted MSK (Kafka) batches by offset: a Kafka broker, moto's SQS, real MongoDB and Redis.

The broker is librdkafka's mock cluster (``test.mock.num.brokers``): an in-process Kafka broker that
speaks the Kafka protocol on a local TCP port, so the replay's consumer reads over a real socket with
the same client it uses against MSK. It implements produce, fetch, metadata and offsets, but not
DeleteRecords, so a range trimmed past retention (below the low watermark) cannot be produced here;
an unknown partition and a range past the partition's end can.

The on-failure messages are AWS's ``KafkaBatchInfo`` shape (``events/msk-on-failure.json``), pointed
at the batches a test chose to let "exhaust"; the Lambda events are built from the broker's records as
the MSK mapping delivers them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.ops.failure_queue import FailureQueue
from infra.ops.kafka_reader import KafkaAccess, KafkaRangeReader
from infra.ops.replay import BatchFailure, parse_failure, replay_queue
from infra.ops.stream_reader import RecordsUnavailableError, StreamRange
from movierec.contracts import StreamRecord
from movierec.ingest.processor import handle_stream_event
from movierec.ingest.service import BatchResult
from tests.integration.ingest_harness import Harness, build_harness
from tests.integration.test_ingest_faults import event_id, seeded_events

ck = pytest.importorskip("confluent_kafka", reason="the ops extra (confluent-kafka) is not installed")

ON_FAILURE_SAMPLE = Path(__file__).resolve().parents[2] / "events" / "msk-on-failure.json"
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/movierec/6c5b3f4e-1d2a-4e4b-9a0f-3d2c1b0a9f8e-1"
BATCH = 50
PARTITIONS = 4  # what the mock broker gives an auto-created topic
LOCAL = KafkaAccess(iam=False, security_protocol="PLAINTEXT")
_topics = count()


@dataclass
class Broker:
    producer: Any
    servers: str


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    producer = ck.Producer({"test.mock.num.brokers": 1, "log_level": 3})
    brokers = producer.list_topics(timeout=10).brokers
    yield Broker(producer, ",".join(f"{b.host}:{b.port}" for b in brokers.values()))
    producer.flush(5)


@pytest.fixture
def topic(broker: Broker) -> str:
    """A fresh topic per test; the mock broker creates it on first produce, with ``PARTITIONS``."""
    return f"movierec-events-{next(_topics)}"


def produce(broker: Broker, topic: str, records: Sequence[tuple[bytes, str]]) -> dict[int, list[Any]]:
    """Produce keyed records; return each partition's messages as the broker stores them, in order."""
    for payload, key in records:
        broker.producer.produce(topic, value=payload, key=key.encode(), partition=hash_partition(key))
    assert broker.producer.flush(10) == 0
    consumer = ck.Consumer(
        {"bootstrap.servers": broker.servers, "group.id": "test", "enable.auto.commit": False, "log_level": 3}
    )
    try:
        stored: dict[int, list[Any]] = {}
        for partition in range(PARTITIONS):
            _low, high = consumer.get_watermark_offsets(ck.TopicPartition(topic, partition), timeout=10)
            consumer.assign([ck.TopicPartition(topic, partition, 0)])
            messages: list[Any] = []
            while len(messages) < high:
                message = consumer.poll(10)
                assert message is not None
                assert message.error() is None
                messages.append(message)
            stored[partition] = messages
        return stored
    finally:
        consumer.close()


def hash_partition(key: str) -> int:
    """Deterministic across runs (Python's str hash is salted)."""
    return int(key.removeprefix("u")) % PARTITIONS


def msk_event(servers: str, messages: Sequence[Any]) -> dict[str, Any]:
    """A batch of one partition's messages, as the MSK event-source mapping invokes the function."""
    first = messages[0]
    records = [
        {
            "topic": m.topic(),
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": m.timestamp()[1],
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(m.key()).decode(),
            "value": base64.b64encode(m.value()).decode(),
            "headers": [],
        }
        for m in messages
    ]
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": CLUSTER_ARN,
        "bootstrapServers": servers,
        "records": {f"{first.topic()}-{first.partition()}": records},
    }


def on_failure_message(servers: str, messages: Sequence[Any]) -> str:
    """AWS's on-failure message for a batch of one partition, as in events/msk-on-failure.json."""
    message = json.loads(ON_FAILURE_SAMPLE.read_text())
    message["KafkaBatchInfo"].update(
        {
            "batchSize": len(messages),
            "topic": messages[0].topic(),
            "partition": messages[0].partition(),
            "firstRecordOffset": messages[0].offset(),
            "lastRecordOffset": messages[-1].offset(),
            "bootstrapServers": servers,
        }
    )
    return json.dumps(message)


def batches(stored: dict[int, list[Any]]) -> list[list[Any]]:
    return [msgs[i : i + BATCH] for msgs in stored.values() for i in range(0, len(msgs), BATCH)]


def stored_ids(harness: Harness) -> list[str]:
    return [str(doc["_id"]) for doc in harness.mongo["events"].find({}, {"_id": 1})]


def test_the_documented_sample_parses_to_its_partition_range() -> None:
    failure = parse_failure(ON_FAILURE_SAMPLE.read_text())
    assert isinstance(failure, BatchFailure)
    assert failure.span == StreamRange(
        "kafka",
        "movierec-events",
        "0",
        100,
        149,
        size=50,
        servers="b-1.movierec.abc123.c2.kafka.us-east-1.amazonaws.com:9098,"
        "b-2.movierec.abc123.c2.kafka.us-east-1.amazonaws.com:9098",
        region="us-east-1",
    )
    kinesis_info = {
        "shardId": "shardId-000000000000",
        "startSequenceNumber": "1",
        "endSequenceNumber": "2",
        "batchSize": 2,
        "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/movierec-events",
    }
    both = json.loads(ON_FAILURE_SAMPLE.read_text()) | {"KinesisBatchInfo": kinesis_info}
    assert parse_failure(json.dumps(both)) is None  # one batch info or the other, never both


def test_exhausted_kafka_batches_are_replayed_by_offset_exactly_once(
    broker: Broker,
    topic: str,
    mongo_uri: str,
    mongo_database_name: str,
    redis_url: str,
    aws_reset: str,
) -> None:
    records = seeded_events(600, users=30)
    stored = produce(broker, topic, records)
    all_batches = batches(stored)
    assert sum(len(b) for b in all_batches) == len(records)

    reference_db = "reference_" + mongo_database_name
    reference = build_harness(mongo_uri, reference_db, redis_url, aws_endpoint=aws_reset)
    try:
        for batch in all_batches:
            handle_stream_event(msk_event(broker.servers, batch), None, reference.service.ingest)
        expected = reference.state()
    finally:
        reference.mongo.client.drop_database(reference_db)

    harness = build_harness(mongo_uri, mongo_database_name, redis_url, aws_endpoint=aws_reset)
    sqs = boto3.client("sqs")
    doomed = {1, 4, 7}  # batches the mapping gave up on
    for index, batch in enumerate(all_batches):
        if index in doomed:
            if index == 4:  # a crash in mid-batch: its first 20 records got through before it
                handle_stream_event(msk_event(broker.servers, batch[:20]), None, harness.service.ingest)
            sqs.send_message(
                QueueUrl=harness.queue_url, MessageBody=on_failure_message(broker.servers, batch)
            )
        else:
            handle_stream_event(msk_event(broker.servers, batch), None, harness.service.ingest)
    doomed_records = sum(len(all_batches[i]) for i in doomed)
    assert len(stored_ids(harness)) == len(records) - doomed_records + 20

    readers = {"kafka": KafkaRangeReader(LOCAL)}
    summary = replay_queue(
        FailureQueue(harness.queue_url, sqs), readers, harness.service.ingest, chunk_size=30
    )
    assert (summary.messages_replayed, summary.messages_left, summary.records) == (3, 0, doomed_records)

    ids = stored_ids(harness)
    assert len(ids) == len(set(ids)) == len(records)
    assert set(ids) == {event_id(payload) for payload, _ in records}
    assert harness.state() == expected  # counters, profiles, Redis: each event applied exactly once
    assert (
        replay_queue(FailureQueue(harness.queue_url, sqs), readers, harness.service.ingest).messages_received
        == 0
    )


def test_records_read_back_by_offset_are_those_the_function_receives(broker: Broker, topic: str) -> None:
    stored = produce(broker, topic, seeded_events(160, users=8))  # 40 per partition
    messages = stored[1][5:25]
    span = StreamRange("kafka", topic, "1", messages[0].offset(), messages[-1].offset(), 20, broker.servers)
    read = KafkaRangeReader(LOCAL).read(span)

    delivered: list[StreamRecord] = []

    def capture(batch: Sequence[StreamRecord]) -> BatchResult:
        delivered.extend(batch)
        return BatchResult()

    handle_stream_event(msk_event(broker.servers, messages), None, capture)
    assert len(read) == 20
    assert [(r.record_id, r.source, r.payload, r.metadata, r.arrival_epoch) for r in read] == [
        (r.record_id, r.source, r.payload, r.metadata, r.arrival_epoch) for r in delivered
    ]


def test_a_range_the_partition_does_not_hold_stays_in_the_queue(
    broker: Broker, topic: str, harness: Harness
) -> None:
    stored = produce(broker, topic, seeded_events(40, users=4))
    tail = stored[0][-10:]
    reader = KafkaRangeReader(LOCAL)
    past_the_end = StreamRange(
        "kafka", topic, "0", tail[0].offset(), tail[-1].offset() + 5, 15, broker.servers
    )
    with pytest.raises(RecordsUnavailableError, match="partition ends before"):
        reader.read(past_the_end)
    with pytest.raises(RecordsUnavailableError, match="no such topic partition"):
        reader.read(StreamRange("kafka", topic, "7", 0, 3, 4, broker.servers))

    sqs = boto3.client("sqs")
    message = json.loads(on_failure_message(broker.servers, tail))
    message["KafkaBatchInfo"]["lastRecordOffset"] += 5
    sqs.send_message(QueueUrl=harness.queue_url, MessageBody=json.dumps(message))
    summary = replay_queue(FailureQueue(harness.queue_url, sqs), {"kafka": reader}, harness.service.ingest)
    assert (summary.messages_replayed, summary.messages_left, summary.records) == (0, 1, 0)
    assert "no longer available" in summary.errors[0]
    assert stored_ids(harness) == []  # nothing of a partial range was ingested


def test_msk_iam_access_signs_a_token_for_the_clusters_region(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    failure = parse_failure(ON_FAILURE_SAMPLE.read_text())
    assert failure is not None
    config = KafkaAccess().consumer_config(failure.span)
    assert (config["security.protocol"], config["sasl.mechanisms"]) == ("SASL_SSL", "OAUTHBEARER")
    assert config["bootstrap.servers"] == failure.span.servers
    token, expiry_s = config["oauth_cb"]("")
    url = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    assert url.startswith("https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect")
    assert expiry_s > 0
