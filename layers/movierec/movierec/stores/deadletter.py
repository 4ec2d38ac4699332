"""The dead-letter queue for poison records: SQS, with oversize payloads parked in S3.

Every message carries the reason, where the record came from and the original payload (base64), so a
person can fix and replay it. Nothing is dropped: a payload too large for SQS goes to S3 and the
message points at it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from movierec.contracts import PoisonRecord
from movierec.stores import aws

SQS_BATCH = 10
INLINE_PAYLOAD_LIMIT = 160 * 1024
"""Raw bytes kept inside the message; base64 and the envelope must stay under SQS's 256 KiB."""

DEAD_LETTER_PREFIX = "dead-letter/"


class DeadLetterError(Exception):
    """Some poison records could not be parked; the caller must report them as failures."""

    def __init__(self, failed_record_ids: set[str]) -> None:
        super().__init__(f"{len(failed_record_ids)} poison records could not be dead-lettered")
        self.failed_record_ids = failed_record_ids


class DeadLetterQueue:
    def __init__(self, queue_url: str, bucket: str, sqs: Any = None, s3: Any = None) -> None:
        self._queue_url = queue_url
        self._bucket = bucket
        self._sqs = sqs or aws.client("sqs")
        self._s3 = s3 or aws.client("s3")

    def send(self, records: Sequence[PoisonRecord]) -> None:
        """Park every record; raise DeadLetterError naming those that could not be parked."""
        failed: set[str] = set()
        for start in range(0, len(records), SQS_BATCH):
            chunk = records[start : start + SQS_BATCH]
            entries = []
            for index, record in enumerate(chunk):
                try:
                    body = self._message_body(record)
                except Exception:  # S3 unavailable: the record stays in the stream for a retry
                    failed.add(record.record_id)
                    continue
                entries.append({"Id": str(index), "MessageBody": body})
            if not entries:
                continue
            try:
                response = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=entries)
            except Exception:
                failed.update(chunk[int(e["Id"])].record_id for e in entries)
                continue
            failed.update(chunk[int(e["Id"])].record_id for e in response.get("Failed", []))
        if failed:
            raise DeadLetterError(failed)

    def _message_body(self, record: PoisonRecord) -> str:
        digest = hashlib.sha256(record.payload).hexdigest()
        message: dict[str, Any] = {
            "reason": record.reason,
            "detail": record.detail[:2000],
            "source": record.source,
            "record_id": record.record_id,
            "event_id": record.event_id,
            "metadata": record.metadata,
            "payload_bytes": len(record.payload),
            "payload_sha256": digest,
        }
        if len(record.payload) <= INLINE_PAYLOAD_LIMIT:
            message["payload_base64"] = base64.b64encode(record.payload).decode()
        else:
            key = f"{DEAD_LETTER_PREFIX}{digest}"
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=record.payload)
            message["payload_s3_uri"] = f"s3://{self._bucket}/{key}"
        return json.dumps(message, separators=(",", ":"))
