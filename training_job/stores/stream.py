"""The Kinesis adapter: put records in PutRecords-sized batches, retrying only what failed.

PutRecords can succeed for some entries and fail for others (throughput exceeded, internal failure);
the call itself then still returns 200. Only the failed entries are resent, after a bounded,
jittered exponential backoff. PutRecords does not preserve order across a retry, so consumers must
not rely on arrival order (events carry ``occurred_at``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from movierec.stores import aws

if TYPE_CHECKING:
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
"""Kinesis limits: a record's size is its data plus its partition key (UTF-8)."""
MAX_PARTITION_KEY_CHARS = 256


class StreamPutError(RuntimeError):
    """Some records were still rejected after every retry."""

    def __init__(self, failed: int, total: int, error_codes: dict[str, int]) -> None:
        codes = ", ".join(f"{code} x{count}" for code, count in sorted(error_codes.items()))
        super().__init__(f"{failed} of {total} records were not accepted by the stream ({codes})")
        self.failed = failed
        self.total = total
        self.error_codes = error_codes


class KinesisStream:
    """Writes (data, partition key) records to one Kinesis data stream."""

    def __init__(
        self,
        stream_name: str,
        client: Any | None = None,
        *,
        max_attempts: int = 8,
        base_delay_s: float = 0.05,
        max_delay_s: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        jitter: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.stream_name = stream_name
        self.client = client if client is not None else aws.client("kinesis")
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._sleep = sleep
        self._jitter = jitter or random.Random()

    def put(self, records: Sequence[tuple[bytes, str]]) -> int:
        """Put every record; returns how many were accepted, or raises :class:`StreamPutError`."""
        for data, key in records:
            _check(data, key)
        failed = 0
        codes: dict[str, int] = {}
        for batch in batches(records):
            rejected = self._put_batch(batch)
            failed += len(rejected)
            for code in rejected:
                codes[code] = codes.get(code, 0) + 1
        if failed:
            raise StreamPutError(failed, len(records), codes)
        return len(records)

    def _put_batch(self, batch: Sequence[tuple[bytes, str]]) -> list[str]:
        """Send one batch, resending only failed entries; the error codes of those that never made it."""
        pending = list(batch)
        codes: list[str] = []
        for attempt in range(self.max_attempts):
            if attempt:
                self._sleep(self._delay(attempt))
            entries: list[PutRecordsRequestEntryTypeDef] = [
                {"Data": data, "PartitionKey": key} for data, key in pending
            ]
            response = self.client.put_records(StreamName=self.stream_name, Records=entries)
            if not response.get("FailedRecordCount"):
                return []
            results = response["Records"]
            retry = [record for record, result in zip(pending, results, strict=True) if "ErrorCode" in result]
            codes = [str(result["ErrorCode"]) for result in results if "ErrorCode" in result]
            pending = retry
        return codes

    def _delay(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): spreads retries of concurrent producers apart.
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return self._jitter.uniform(0, ceiling)


def record_size(data: bytes, partition_key: str) -> int:
    return len(data) + len(partition_key.encode())


def _check(data: bytes, partition_key: str) -> None:
    if not 1 <= len(partition_key) <= MAX_PARTITION_KEY_CHARS:
        raise ValueError(f"partition key must have 1-{MAX_PARTITION_KEY_CHARS} characters: {partition_key!r}")
    size = record_size(data, partition_key)
    if size > MAX_RECORD_BYTES:
        raise ValueError(f"record of {size} bytes exceeds the {MAX_RECORD_BYTES}-byte Kinesis limit")


def batches(records: Sequence[tuple[bytes, str]]) -> list[list[tuple[bytes, str]]]:
    """Split records, in order, into PutRecords requests within the count and size limits."""
    result: list[list[tuple[bytes, str]]] = []
    current: list[tuple[bytes, str]] = []
    size = 0
    for data, key in records:
        record = record_size(data, key)
        if current and (len(current) == MAX_BATCH_RECORDS or size + record > MAX_BATCH_BYTES):
            result.append(current)
            current, size = [], 0
        current.append((data, key))
        size += record
    if current:
        result.append(current)
    return result


__all__ = [
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "MAX_RECORD_BYTES",
    "KinesisStream",
    "StreamPutError",
    "batches",
    "record_size",
]
