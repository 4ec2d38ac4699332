"""A Kinesis event-source mapping, emulated: the poller Lambda runs for a stream, with its error handling.

For each shard it reads from a checkpoint (kept under ``.local/kinesis/``), builds the Kinesis Lambda
event, invokes the function and then, as AWS does:

- success (or an empty/null ``batchItemFailures``) moves the checkpoint past the batch;
- ``batchItemFailures`` (with ReportBatchItemFailures on) moves it to just before the lowest failed
  sequence number and redelivers from there; an empty, null or unknown ``itemIdentifier`` fails the
  whole batch;
- a function error with BisectBatchOnFunctionError splits the batch in two and retries each half
  (splitting does not count as a retry);
- after MaximumRetryAttempts retries of the same record, or once a record is older than
  MaximumRecordAgeInSeconds, the batch's metadata goes to the on-failure destination and the shard
  moves on. An infinite (-1) retry setting is capped locally so that draining always ends.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from infra.local.errors import UsageError
from infra.local.kinesis.progress import CheckpointStore, PollStats
from infra.local.kinesis.records import StreamRecord, kinesis_event
from infra.local.template import ACCOUNT_ID, REGION, KinesisSource

LOCAL_RETRY_CAP = 10
"""Retries of one record when the template allows infinitely many (-1)."""


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _ShardState:
    shard_id: str
    checkpoint: str | None
    pending_sizes: list[int] = field(default_factory=list)  # batch sizes queued by bisection
    failing_sequence: str | None = None
    attempts: int = 0
    iterator: str | None = None  # where the next read continues; None: from the checkpoint


class KinesisPoller:
    """Drives one Kinesis event-source mapping against a stream on moto or LocalStack."""

    def __init__(
        self,
        source: KinesisSource,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        kinesis: Any,
        state_dir: Path,
        sqs: Any | None = None,
        function_arn: str | None = None,
        invoke_identity_arn: str | None = None,
        batch_size: int | None = None,
        clock: Callable[[], float] = time.time,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.invoke = invoke
        self.kinesis = kinesis
        self.sqs = sqs
        self.batch_size = batch_size or source.batch_size
        self.function_arn = (
            function_arn or f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{source.function_id}"
        )
        self.invoke_identity_arn = (
            invoke_identity_arn or f"arn:aws:iam::{ACCOUNT_ID}:role/{source.function_id}Role"
        )
        self.clock = clock
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self.max_retries = source.max_retry_attempts if source.max_retry_attempts >= 0 else LOCAL_RETRY_CAP
        try:
            summary = kinesis.describe_stream_summary(StreamName=source.stream_name)[
                "StreamDescriptionSummary"
            ]
        except kinesis.exceptions.ResourceNotFoundException as error:
            raise UsageError(f"stream {source.stream_name} does not exist; run `make up` first") from error
        created = summary.get("StreamCreationTimestamp")
        self._started = clock()
        self.checkpoints = CheckpointStore.open(
            state_dir,
            source.function_id,
            source.stream_name,
            created.isoformat() if isinstance(created, datetime) else str(created),
        )

    # -- reading --

    def _shard_ids(self) -> list[str]:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": self.source.stream_name}
        while True:
            page = self.kinesis.list_shards(**kwargs)
            shards.extend(shard["ShardId"] for shard in page["Shards"])
            if not page.get("NextToken"):
                return shards
            kwargs = {"NextToken": page["NextToken"]}

    def _iterator(self, shard: _ShardState) -> str:
        kwargs: dict[str, Any] = {"StreamName": self.source.stream_name, "ShardId": shard.shard_id}
        if shard.checkpoint is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=shard.checkpoint)
        elif self.source.starting_position == "LATEST":
            # LATEST means "from when the mapping was created": the poller's start here.
            kwargs.update(
                ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(self._started, UTC)
            )
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return str(self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"])

    def _read(self, shard: _ShardState, limit: int) -> list[StreamRecord]:
        # After a delivered batch the iterator continues where it stopped; otherwise from the checkpoint.
        iterator: str | None = shard.iterator or self._iterator(shard)
        records: list[StreamRecord] = []
        # A single get_records may come back short of records that exist; follow the iterator a little.
        for _ in range(5):
            if iterator is None or len(records) >= limit:
                break
            page = self.kinesis.get_records(ShardIterator=iterator, Limit=limit - len(records))
            records.extend(StreamRecord.from_get_records(record) for record in page["Records"])
            if not page["Records"] and not page.get("MillisBehindLatest"):
                break
            iterator = page.get("NextShardIterator")
        shard.iterator = iterator
        return records

    # -- the mapping's loop --

    def drain(self) -> PollStats:
        """Process every shard until no records are left; what ``poll --until-idle`` runs."""
        total = PollStats()
        while True:
            stats = self.poll_once()
            total.add(stats)
            total.shards = stats.shards
            if stats.invocations == 0 and stats.records_dead_lettered == 0:
                return total

    def poll_once(self) -> PollStats:
        """One pass: each shard is processed until its records run out."""
        stats = PollStats()
        shard_ids = self._shard_ids()
        stats.shards = len(shard_ids)
        for shard_id in shard_ids:
            shard = _ShardState(shard_id, self.checkpoints.get(shard_id))
            while self._step(shard, stats):
                pass
        return stats

    def _step(self, shard: _ShardState, stats: PollStats) -> bool:
        """Read and deliver one batch; False once the shard has nothing more."""
        records = self._read(shard, shard.pending_sizes[0] if shard.pending_sizes else self.batch_size)
        if not records:
            return False
        kept = self._drop_expired(shard, records, stats)
        if len(kept) < len(records):
            shard.iterator = None
        records = kept
        if not records:
            return True
        event = kinesis_event(
            records,
            shard_id=shard.shard_id,
            stream_arn=self.source.stream_arn,
            invoke_identity_arn=self.invoke_identity_arn,
        )
        stats.invocations += 1
        stats.records_delivered += len(records)
        failed_at, function_error = self._invoke(shard, event, records, stats)
        if failed_at is not None:
            shard.iterator = None  # redelivery reads from the checkpoint again
        if failed_at is None:
            self._advance(shard, records[-1].sequence_number)
            stats.records_processed += len(records)
            if shard.pending_sizes:
                shard.pending_sizes.pop(0)
            return True
        if failed_at > 0:
            # Records before the first failure are done; redelivery starts at the failed one.
            stats.partial_failures += 1
            stats.records_processed += failed_at
            self._advance(shard, records[failed_at - 1].sequence_number)
        elif not function_error:
            stats.partial_failures += 1
        if function_error and self.source.bisect_on_error and len(records) > 1:
            half = len(records) // 2
            shard.pending_sizes[:1] = [half, len(records) - half]
            stats.bisections += 1
            return True
        failing = records[failed_at].sequence_number
        if failing == shard.failing_sequence:
            shard.attempts += 1
        else:
            shard.failing_sequence, shard.attempts = failing, 1
        if shard.attempts <= self.max_retries:
            stats.retries += 1
            return True
        remaining = records[failed_at:]
        self._dead_letter(shard, remaining, "RetryAttemptsExhausted", shard.attempts, function_error)
        stats.records_dead_lettered += len(remaining)
        stats.batches_dead_lettered += 1
        self._advance(shard, remaining[-1].sequence_number)
        if shard.pending_sizes:
            shard.pending_sizes.pop(0)
        return True

    def _invoke(
        self, shard: _ShardState, event: dict[str, Any], records: Sequence[StreamRecord], stats: PollStats
    ) -> tuple[int | None, bool]:
        """(index of the first failed record or None, whether the function raised)."""
        try:
            response = self.invoke(event)
        except UsageError:
            raise
        except Exception as error:
            stats.function_errors += 1
            self.log(
                f"{self.source.function_id}: {shard.shard_id}: function error {type(error).__name__}: {error}"
            )
            return 0, True
        if not self.source.report_batch_item_failures or not isinstance(response, dict):
            return None, False
        failures = response.get("batchItemFailures")
        if not failures:
            return None, False
        positions = {record.sequence_number: index for index, record in enumerate(records)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(identifier, str) or identifier not in positions:
                self.log(
                    f"{self.source.function_id}: bad batchItemFailures entry {failure!r}: whole batch failed"
                )
                return 0, False
            indexes.append(positions[identifier])
        return min(indexes), False

    def _drop_expired(
        self, shard: _ShardState, records: list[StreamRecord], stats: PollStats
    ) -> list[StreamRecord]:
        if self.source.max_record_age_s < 0:
            return records
        now = self.clock()
        expired = [r for r in records if now - r.approximate_arrival > self.source.max_record_age_s]
        if not expired:
            return records
        self._dead_letter(shard, expired, "RecordAgeExceeded", 0, False)
        stats.records_dead_lettered += len(expired)
        stats.batches_dead_lettered += 1
        self._advance(shard, expired[-1].sequence_number)
        return [r for r in records if int(r.sequence_number) > int(expired[-1].sequence_number)]

    def _advance(self, shard: _ShardState, sequence_number: str) -> None:
        shard.checkpoint = sequence_number
        shard.failing_sequence, shard.attempts = None, 0
        self.checkpoints.set(shard.shard_id, sequence_number)

    # -- the on-failure destination --

    def _dead_letter(
        self,
        shard: _ShardState,
        records: Sequence[StreamRecord],
        condition: str,
        invoke_count: int,
        function_error: bool,
    ) -> None:
        """Send the batch's metadata (not its data, as in AWS) to the on-failure destination."""
        message: dict[str, Any] = {
            "requestContext": {
                "requestId": os.urandom(16).hex(),
                "functionArn": self.function_arn,
                "condition": condition,
                "approximateInvokeCount": invoke_count,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST"},
            "version": "1.0",
            "timestamp": _iso(self.clock()),
            "KinesisBatchInfo": {
                "shardId": shard.shard_id,
                "startSequenceNumber": records[0].sequence_number,
                "endSequenceNumber": records[-1].sequence_number,
                "approximateArrivalOfFirstRecord": _iso(records[0].approximate_arrival),
                "approximateArrivalOfLastRecord": _iso(records[-1].approximate_arrival),
                "batchSize": len(records),
                "streamArn": self.source.stream_arn,
            },
        }
        if function_error:
            message["responseContext"]["functionError"] = "Unhandled"
        destination = self.source.on_failure_arn
        self.log(
            f"{self.source.function_id}: {condition}: {len(records)} records of {shard.shard_id} "
            f"({records[0].sequence_number}..{records[-1].sequence_number}) -> {destination or 'discarded'}"
        )
        if destination is None:
            return
        if not destination.startswith("arn:aws:sqs:") or self.sqs is None:
            self.log(f"{self.source.function_id}: on-failure destination {destination} is not emulated")
            return
        queue_url = self.sqs.get_queue_url(QueueName=destination.rsplit(":", 1)[-1])["QueueUrl"]
        self.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
