"""Ingest one batch: decode, dead-letter the poison, store the rest, update real-time state.

Outcomes per record:
- valid and applied (or a harmless duplicate): success;
- poison (undecodable, too complex, invalid, oversize, unknown type, dated in the future, or an event id
  already used, in this batch or by a stored event, with a different body): parked on the dead-letter
  queue, success, so a bad record never blocks its shard;
- anything that failed for a transient reason (a store down, a timeout, the DLQ unreachable): reported
  as a failure so Lambda retries it. Every effect is idempotent, so the retry is safe.

Log lines about one event carry its ``event_id`` as ``correlation_id``: a poison record's warning (when
its payload had a readable id), and at DEBUG (or in an invocation Powertools samples for debug logging)
one line per event with its outcome: stored, duplicate, or failed and to be retried.

The raw events are inserted first: MongoDB's id index is the one place that knows, across batches and
shards, whether an event id is new, a redelivery of the same body, or reused by a different event (poison:
it changes nothing anywhere). Then the effects of the accepted events go to Redis and to MongoDB's user
and movie documents at the same time: neither reads the other's result and each is idempotent, so a
batch that fails in either store is retried whole, redeliveries included, and a store that missed a
delivery (Redis down while MongoDB took it) catches up on the retry or the replay.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from movierec.contracts import PoisonRecord, StreamRecord
from movierec.errors import StoreUnavailableError
from movierec.events import Event
from movierec.ingest.decode import InputRules, decode
from movierec.ingest.effects import RealtimeChanges
from movierec.observability import logger
from movierec.stores.deadletter import DeadLetterError, DeadLetterQueue
from movierec.stores.documents import EventDocuments, StoredEvents, body_digest
from movierec.stores.realtime import RealtimeState, TrendingPolicy

_T = TypeVar("_T")


@dataclass(frozen=True)
class StoreRetry:
    """Backoff inside one invocation before a batch is handed back to the event-source mapping, whose
    own retries come at once: long enough to ride out a store restart or a failover."""

    budget_seconds: float
    first_delay_seconds: float = 0.25
    sleep: Callable[[float], None] = time.sleep

    def delays(self) -> Iterator[float]:
        """Doubling waits whose sum stays within the budget."""
        delay, spent = self.first_delay_seconds, 0.0
        while delay > 0 and spent + delay <= self.budget_seconds:
            yield delay
            spent += delay
            delay *= 2


@dataclass
class BatchResult:
    failed_record_ids: set[str] = field(default_factory=set)
    events_by_type: Counter[str] = field(default_factory=Counter)
    invalid: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    write_ms: float = 0.0
    iterator_age_ms: float | None = None


class IngestService:
    def __init__(
        self,
        documents: EventDocuments,
        realtime: RealtimeState,
        dead_letters: DeadLetterQueue,
        trending: TrendingPolicy,
        max_clock_skew_seconds: float,
        store_retry: StoreRetry,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._documents = documents
        self._realtime = realtime
        self._dead_letters = dead_letters
        self._trending = trending
        self._clock = clock
        self._max_clock_skew = max_clock_skew_seconds
        self._store_retry = store_retry
        # One thread for the container's lifetime: Redis writes overlap MongoDB's (see the module docstring).
        self._realtime_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realtime")

    def ingest(self, records: Sequence[StreamRecord]) -> BatchResult:
        result = BatchResult()
        now = self._clock()
        arrivals = [r.arrival_epoch for r in records if r.arrival_epoch is not None]
        if arrivals:
            result.iterator_age_ms = max(0.0, (now - min(arrivals)) * 1000)

        rules = InputRules(now=now, max_future_seconds=self._max_clock_skew)
        events: list[Event] = []
        event_records: list[StreamRecord] = []
        variants: list[tuple[Event, StreamRecord]] = []  # other bodies under an id met earlier in the batch
        poison: list[PoisonRecord] = []
        bodies_of_id: dict[str, list[Event]] = {}
        for record in records:
            decoded = decode(record, rules)
            if isinstance(decoded, PoisonRecord):
                poison.append(decoded)
                continue
            event_id = str(decoded.event_id)
            bodies = bodies_of_id.setdefault(event_id, [])
            if decoded in bodies:  # the same event twice in one batch: apply once
                result.duplicates += 1
                _log_event(event_id, record.record_id, "duplicate in batch")
                continue
            bodies.append(decoded)
            if len(bodies) > 1:  # which body is the event, MongoDB's id index decides (``_settle``)
                variants.append((decoded, record))
                continue
            events.append(decoded)
            event_records.append(record)

        self._park(poison, result)
        if events:
            self._apply(events, event_records, variants, result, now)
        return result

    def _park(self, poison: list[PoisonRecord], result: BatchResult) -> None:
        if not poison:
            return
        for record in poison:
            logger.warning(
                "poison record",
                extra={
                    "correlation_id": record.event_id,
                    "record_id": record.record_id,
                    "reason": record.reason,
                    "detail": record.detail,
                },
            )
        result.invalid += len(poison)
        failed: set[str] = set()
        try:
            self._dead_letters.send(poison)
        except DeadLetterError as error:
            logger.error(
                "dead-letter queue unavailable; records will be retried",
                extra={"count": len(error.failed_record_ids)},
            )
            failed = error.failed_record_ids
        result.failed_record_ids |= failed
        result.dead_lettered += len(poison) - len(failed)

    def _apply(
        self,
        events: list[Event],
        records: list[StreamRecord],
        variants: list[tuple[Event, StreamRecord]],
        result: BatchResult,
        now: float,
    ) -> None:
        # Until the stored bodies settle them, the variants share the batch's fate.
        pending = [*zip(events, records, strict=True), *variants]
        started = time.perf_counter()
        try:
            # The raw events go first: the id index tells a redelivery (applied again, idempotently, so
            # a store that missed it catches up) from an id reused by another event (poison, no effect).
            stored = self._retrying(self._documents.store_events, events)
            events, records, redelivered = self._settle(events, records, variants, stored, result)
            pending = list(zip(events, records, strict=True))
            self._retrying(self._apply_effects, events, now)
        except StoreUnavailableError as error:
            logger.warning(
                "store unavailable; batch will be retried", extra={"error": str(error), "events": len(events)}
            )
            result.failed_record_ids.update(r.record_id for _, r in pending)
            _log_events(
                [e for e, _ in pending],
                [r.record_id for _, r in pending],
                lambda _: "failed, will be retried",
            )
            return
        finally:
            result.write_ms = (time.perf_counter() - started) * 1000
        result.duplicates += len(redelivered)
        result.events_by_type.update(str(e.type) for e in events)
        _log_events(
            events,
            [r.record_id for r in records],
            lambda event_id: "duplicate" if event_id in redelivered else "stored",
        )

    def _settle(
        self,
        events: list[Event],
        records: list[StreamRecord],
        variants: list[tuple[Event, StreamRecord]],
        stored: StoredEvents,
        result: BatchResult,
    ) -> tuple[list[Event], list[StreamRecord], frozenset[str]]:
        """The stored body under an id is the event, whatever the batching: any other body is poison
        with no effect, and a body equal to the stored one is a redelivery, applied again. Returns the
        events to apply, their records, and the ids among them that were stored before."""
        stored_bodies = stored.stored_digests  # ids whose first body in this batch is not the stored one
        redelivered_variant: dict[str, tuple[Event, StreamRecord]] = {}
        poison: list[PoisonRecord] = []
        for variant, record in variants:
            event_id = str(variant.event_id)
            if event_id in stored_bodies and body_digest(variant) == stored_bodies[event_id]:
                redelivered_variant[event_id] = (variant, record)
                continue
            known = event_id in stored_bodies or event_id in stored.duplicate_ids
            poison.append(
                _conflicting(record, event_id, "by an event already stored" if known else "in this batch")
            )
        kept_events: list[Event] = []
        kept_records: list[StreamRecord] = []
        for event, record in zip(events, records, strict=True):
            event_id = str(event.event_id)
            if event_id not in stored_bodies:
                kept_events.append(event)
                kept_records.append(record)
                continue
            poison.append(_conflicting(record, event_id, "by an event already stored"))
            if event_id in redelivered_variant:  # a later body in the batch is the stored event
                kept_events.append(redelivered_variant[event_id][0])
                kept_records.append(redelivered_variant[event_id][1])
        self._park(poison, result)
        return kept_events, kept_records, stored.duplicate_ids | redelivered_variant.keys()

    def _retrying(self, write: Callable[..., _T], *args: Any) -> _T:
        """One idempotent write, retried with backoff; the last StoreUnavailableError is raised."""
        for delay in self._store_retry.delays():
            try:
                return write(*args)
            except StoreUnavailableError as error:
                logger.info("store unavailable; retrying", extra={"error": str(error), "delay_s": delay})
                self._store_retry.sleep(delay)
        return write(*args)

    def _apply_effects(self, events: list[Event], now: float) -> None:
        """Redis and MongoDB's counters, profiles and movies at the same time: neither reads the other."""
        changes = RealtimeChanges.of(events)
        realtime = self._realtime_writer.submit(
            self._realtime.apply, changes.engagements, changes.profiles, changes.movies, self._trending, now
        )
        try:
            self._documents.write_effects(events, changes.profiles, changes.movies)
        finally:
            # Waited for even when MongoDB failed: no write may outlive the invocation that made it.
            realtime.result()


def _conflicting(record: StreamRecord, event_id: str, where: str) -> PoisonRecord:
    return PoisonRecord(
        record.record_id,
        record.source,
        "conflicting_event_id",
        f"event_id {event_id} is already used {where}, with a different body",
        record.payload,
        record.metadata,
        event_id,
    )


def _log_events(events: Sequence[Event], record_ids: Sequence[str], outcome: Callable[[str], str]) -> None:
    if logger.log_level > logging.DEBUG:  # one line per event is for debugging, not for every batch
        return
    for event, record_id in zip(events, record_ids, strict=True):
        _log_event(str(event.event_id), record_id, outcome(str(event.event_id)))


def _log_event(event_id: str, record_id: str, outcome: str) -> None:
    logger.debug(f"event {outcome}", extra={"correlation_id": event_id, "record_id": record_id})
