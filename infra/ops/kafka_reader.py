"""Reading a range of one Kafka partition back by offset: replaying an exhausted MSK batch.

An MSK (or self-managed Kafka) event-source mapping's on-failure message carries the topic, the
partition and the first and last offsets of the batch, never the data. The records are read again
with a consumer assigned to that partition at the first offset (no consumer group membership and no
commit: the mapping's own group is left alone). That works only while the offsets are within the
topic's retention (``retention.ms``); a range that starts below the partition's low watermark, or ends
at or beyond its high watermark, raises :class:`RecordsUnavailableError` rather than replaying a part.

The client is confluent-kafka (librdkafka). Against MSK it authenticates with IAM through SASL
OAUTHBEARER and ``aws-msk-iam-sasl-signer-python``, as AWS documents; both are the ``ops`` extra, not
part of the Lambda layer, so they are imported only when a Kafka range is read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infra.ops.stream_reader import StreamRange
from movierec.contracts import StreamRecord
from movierec.errors import StoreUnavailableError

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Message

POLL_TIMEOUT_S = 5.0
"""One poll's wait: a broker that sends nothing this long while records are due is treated as down."""
MAX_IDLE_POLLS = 6


@dataclass(frozen=True)
class KafkaAccess:
    """How to reach the cluster. ``iam``: MSK IAM auth over TLS (the deployed case), tokens for
    ``iam_region`` or else the region of the cluster the message names; otherwise the
    ``security_protocol`` as given (PLAINTEXT for a local broker)."""

    iam: bool = True
    iam_region: str | None = None
    security_protocol: str = "SASL_SSL"
    bootstrap_servers: str | None = None  # overrides the servers the on-failure message names
    extra: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    def consumer_config(self, span: StreamRange) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers or span.servers,
            "group.id": "movierec-replay",  # required by the client; never joined, nothing is committed
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "error",  # an offset past retention fails the read instead of skipping
            "security.protocol": self.security_protocol,
            **self.extra,
        }
        if self.iam:
            region = self.iam_region or span.region
            if region is None:
                raise StoreUnavailableError(
                    f"{span.describe()}: MSK IAM auth needs a region (--kafka-region)"
                )

            def token(_config: str) -> tuple[str, float]:
                from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

                value, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
                return value, expiry_ms / 1000

            config.update(
                {"security.protocol": "SASL_SSL", "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": token}
            )
        return config


class KafkaRangeReader:
    """Reads the records between two offsets (both included) of one topic partition."""

    def __init__(self, access: KafkaAccess, *, poll_timeout_s: float = POLL_TIMEOUT_S) -> None:
        self.access = access
        self.poll_timeout_s = poll_timeout_s

    def read(self, span: StreamRange) -> list[StreamRecord]:
        """Raises :class:`RecordsUnavailableError` when any part of the range is gone, and
        ``StoreUnavailableError`` when the cluster cannot be reached (retry later)."""
        from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

        if span.servers is None and self.access.bootstrap_servers is None:
            raise StoreUnavailableError(f"{span.describe()}: no bootstrap servers in the message or given")
        partition = int(span.partition)
        consumer = Consumer(self.access.consumer_config(span))
        try:
            try:
                low, high = consumer.get_watermark_offsets(
                    TopicPartition(span.stream, partition), timeout=self.poll_timeout_s
                )
            except KafkaException as error:
                code = error.args[0].code() if error.args else None
                if code in (KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    raise span.gone(f"no such topic partition: {error}") from error
                raise StoreUnavailableError(f"kafka: {error}") from error
            if span.first < low:
                raise span.gone(f"the partition's oldest offset is {low}: trimmed past retention")
            if span.last >= high:
                raise span.gone(f"the partition ends before offset {span.last} (next offset {high})")
            consumer.assign([TopicPartition(span.stream, partition, span.first)])
            return self._collect(consumer, span)
        finally:
            consumer.close()

    def _collect(self, consumer: Consumer, span: StreamRange) -> list[StreamRecord]:
        from confluent_kafka import KafkaError

        records: list[StreamRecord] = []
        idle = 0
        while True:
            message = consumer.poll(self.poll_timeout_s)
            if message is None:
                idle += 1
                if idle >= MAX_IDLE_POLLS:
                    raise StoreUnavailableError(f"{span.describe()}: the broker stopped answering")
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    raise span.gone(f"the partition ended at {message.offset()}, before {span.last}")
                if error.code() == KafkaError._AUTO_OFFSET_RESET:
                    raise span.gone(f"offset out of range: trimmed past retention ({error.str()})")
                raise StoreUnavailableError(f"kafka: {error.str()}")
            offset = message.offset() or 0
            if offset < span.first:
                continue
            if not records and offset > span.first:
                raise span.gone(f"the first readable offset is {offset}: trimmed past retention")
            records.append(_stream_record(message))
            if offset >= span.last:
                return records


def _stream_record(message: Message) -> StreamRecord:
    """As functions/ingest's processor builds a Kafka record (``movierec.ingest.processor``)."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    _kind, timestamp_ms = message.timestamp()
    return StreamRecord(
        record_id=f"{topic}-{partition}@{offset}",
        source="kafka",
        payload=bytes(message.value() or b""),
        arrival_epoch=timestamp_ms / 1000 if timestamp_ms > 0 else None,
        metadata={"topic": topic, "partition": partition, "offset": offset},
    )


__all__ = ["KafkaAccess", "KafkaRangeReader"]
