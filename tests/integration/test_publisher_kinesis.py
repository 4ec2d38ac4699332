"""Publish a dataset to a Kinesis stream (moto) and read every record back, with and without faults.

Uses moto's in-process ``mock_aws`` for now; switching to the session's ``aws_endpoint`` moto server only
means building the client without the mock.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from movierec.data.dataset import Dataset
from movierec.events import RatingEvent, WatchEvent, dump_event, parse_event
from training_job.sources.publisher import event_count, iter_events, partition_key, publish
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.stream import KinesisStream

STREAM = "movierec-test-events"
SHARDS = 2


@pytest.fixture
def kinesis(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Fake credentials and no custom endpoint: the mock must answer, nothing may reach a real account.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("kinesis", region_name="us-east-1")
        client.create_stream(StreamName=STREAM, ShardCount=SHARDS)
        client.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 0})
        yield client


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate(SyntheticConfig(seed=4, n_users=40, n_movies=30, n_events=900, n_regions=3))


def read_all(client: Any) -> list[tuple[bytes, str]]:
    """Every record in the stream, shard by shard, from the start."""
    found: list[tuple[bytes, str]] = []
    for shard in client.list_shards(StreamName=STREAM)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1_000)
            found.extend((r["Data"], r["PartitionKey"]) for r in page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return found


def expected_records(data: Dataset) -> list[tuple[bytes, str]]:
    return [(dump_event(e), partition_key(e)) for e in iter_events(data)]


def by_key(records: list[tuple[bytes, str]]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for data, key in records:
        grouped.setdefault(key, []).append(data)
    return grouped


class FlakyKinesis:
    """The real (moto) client, except that every third record of a call fails the first time it is seen.

    Failed entries are not forwarded, as with a real throttled shard, and come back marked with an
    ErrorCode in a response that otherwise reports success.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.seen: set[bytes] = set()
        self.calls = 0
        self.injected = 0

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        self.calls += 1
        passing: list[dict[str, Any]] = []
        failing: set[int] = set()
        for index, record in enumerate(Records):
            if index % 3 == 0 and record["Data"] not in self.seen:
                failing.add(index)
            else:
                passing.append(record)
            self.seen.add(record["Data"])
        self.injected += len(failing)
        real = (
            iter(self.client.put_records(StreamName=StreamName, Records=passing)["Records"])
            if passing
            else iter(())
        )
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
            if index in failing
            else next(real)
            for index in range(len(Records))
        ]
        return {"FailedRecordCount": len(failing), "Records": results}


def test_publish_and_read_everything_back(kinesis: Any, dataset: Dataset) -> None:
    progress: list[tuple[int, int]] = []
    stream = KinesisStream(STREAM, kinesis, sleep=lambda _: None)
    sent = publish(dataset, stream, lambda done, total: progress.append((done, total)))
    assert sent == event_count(dataset) == 40 + 30 + 900
    assert progress[-1] == (sent, sent)

    stored = read_all(kinesis)
    assert Counter(stored) == Counter(expected_records(dataset))
    events = [parse_event(data) for data, _ in stored]
    assert sum(isinstance(e, RatingEvent | WatchEvent) for e in events) == 900
    # One user's events share a partition key, hence a shard, where they keep their publishing order.
    assert by_key(stored) == by_key(expected_records(dataset))


def test_partial_failures_are_retried_until_everything_is_in(kinesis: Any, dataset: Dataset) -> None:
    flaky = FlakyKinesis(kinesis)
    sleeps: list[float] = []
    stream = KinesisStream(STREAM, flaky, sleep=sleeps.append, jitter=random.Random(1), max_delay_s=0.5)
    assert publish(dataset, stream) == event_count(dataset)
    assert flaky.injected > 0
    assert len(sleeps) > 0
    assert max(sleeps) <= 0.5
    stored = read_all(kinesis)
    assert Counter(stored) == Counter(expected_records(dataset))  # every record exactly once


def test_republishing_repeats_event_ids(kinesis: Any, dataset: Dataset) -> None:
    stream = KinesisStream(STREAM, kinesis, sleep=lambda _: None)
    publish(dataset, stream)
    publish(dataset, stream)
    ids = Counter(parse_event(data).event_id for data, _ in read_all(kinesis))
    assert len(ids) == event_count(dataset)
    assert set(ids.values()) == {2}  # ingest's idempotency sees each event twice under one id
