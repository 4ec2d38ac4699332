"""The SQS queue an event-source mapping sends exhausted batches to, as a replay consumes it.

A replay receives up to N messages, deletes the ones it finished and releases the rest (visibility
back to zero), so they stay for the next run. The same queue also holds poison records; those are
received and released untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from movierec.errors import StoreUnavailableError
from movierec.stores import aws

SQS_BATCH = 10
DEFAULT_VISIBILITY_TIMEOUT_S = 900
"""How long a received message stays hidden from other consumers: longer than one run's replay."""


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    receipt_handle: str
    body: str


class FailureQueue:
    def __init__(
        self,
        queue_url: str,
        sqs: Any | None = None,
        *,
        visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S,
    ) -> None:
        self.queue_url = queue_url
        self._sqs = sqs if sqs is not None else aws.client("sqs")
        self._visibility_timeout_s = visibility_timeout_s

    def receive(self, max_messages: int) -> list[QueueMessage]:
        """Up to ``max_messages`` messages, fewer once the queue answers empty (no long polling)."""
        messages: list[QueueMessage] = []
        seen: set[str] = set()
        while len(messages) < max_messages:
            try:
                response = self._sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(SQS_BATCH, max_messages - len(messages)),
                    VisibilityTimeout=self._visibility_timeout_s,
                    WaitTimeSeconds=0,
                )
            except (ClientError, BotoCoreError) as error:
                raise StoreUnavailableError(f"sqs receive_message: {error}") from error
            batch = [
                QueueMessage(str(m["MessageId"]), str(m["ReceiptHandle"]), str(m["Body"]))
                for m in response.get("Messages", [])
                if m["MessageId"] not in seen
            ]
            if not batch:
                return messages
            seen.update(m.message_id for m in batch)
            messages.extend(batch)
        return messages

    def delete(self, messages: Sequence[QueueMessage]) -> None:
        """Delete finished messages; raises ``StoreUnavailableError`` naming any that stayed."""
        self._each_batch("delete_message_batch", messages, {})

    def release(self, messages: Sequence[QueueMessage]) -> None:
        """Make messages visible again now, for the next run (else they return after the timeout)."""
        self._each_batch("change_message_visibility_batch", messages, {"VisibilityTimeout": 0})

    def _each_batch(self, operation: str, messages: Sequence[QueueMessage], extra: dict[str, Any]) -> None:
        failed: list[str] = []
        for start in range(0, len(messages), SQS_BATCH):
            chunk = messages[start : start + SQS_BATCH]
            entries = [
                {"Id": str(index), "ReceiptHandle": message.receipt_handle, **extra}
                for index, message in enumerate(chunk)
            ]
            try:
                response = getattr(self._sqs, operation)(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError) as error:
                raise StoreUnavailableError(f"sqs {operation}: {error}") from error
            failed += [chunk[int(entry["Id"])].message_id for entry in response.get("Failed", [])]
        if failed:
            raise StoreUnavailableError(f"sqs {operation} failed for messages {', '.join(failed)}")


__all__ = ["DEFAULT_VISIBILITY_TIMEOUT_S", "FailureQueue", "QueueMessage"]
