"""The local stand-in for the served-list subscription: CloudWatch Logs subscription filter -> Firehose
-> ``s3://$ARTIFACT_BUCKET/served/YYYY/MM/DD/HH/`` (template.yaml, ``ServedListSubscription``).

The recommend function's EMF documents are read back from its output (``EmfTap``); each one holding the
served-list record (``movierec.served.SERVED_LIST_KEY``) is queued, and a background thread delivers
the queue in batches, one object of newline-terminated JSON lines each, into the moto bucket under the
prefix and the hour partition Firehose uses. Like Firehose it buffers: no request waits on S3 (an S3
put per request cut start-api's throughput twentyfold). ``flush`` waits until everything queued is
delivered. The attribution stage reads the objects by the same code as on AWS
(``training_job/attribution_stage.py``).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from movierec.served import SERVED_LIST_KEY, SERVED_PREFIX

BATCH_LINES = 500
BATCH_SECONDS = 1.0


class ServedLogDelivery:
    def __init__(
        self,
        put_object: Callable[[str, bytes], None],
        clock: Callable[[], float] = time.time,
        batch_seconds: float = BATCH_SECONDS,
    ) -> None:
        self._put = put_object
        self._clock = clock
        self._batch_seconds = batch_seconds
        self._queue: queue.Queue[bytes | threading.Event] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def observe_emf(self, document: Mapping[str, Any]) -> None:
        if SERVED_LIST_KEY not in document:
            return
        self._start()
        self._queue.put(orjson.dumps(document) + b"\n")

    def flush(self, timeout: float = 30.0) -> None:
        """Block until every record observed so far is delivered."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, name="served-log", daemon=True)
                self._thread.start()

    def _deliver(self) -> None:
        while True:
            lines: list[bytes] = []
            waiters: list[threading.Event] = []
            deadline = time.monotonic() + self._batch_seconds
            while len(lines) < BATCH_LINES and not waiters:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    lines.append(item)
            if lines:
                self._write(b"".join(lines))
            for waiter in waiters:
                waiter.set()

    def _write(self, body: bytes) -> None:
        partition = time.strftime("%Y/%m/%d/%H", time.gmtime(self._clock()))
        key = f"{SERVED_PREFIX}{partition}/local-{uuid.uuid4()}"
        try:
            self._put(key, body)
        except Exception as error:  # like a Firehose that cannot deliver: the answers were sent anyway
            print(f"served-list delivery failed: {error}", file=sys.stderr)


def s3_delivery(s3: Any, bucket: str) -> ServedLogDelivery:
    return ServedLogDelivery(lambda key, body: s3.put_object(Bucket=bucket, Key=key, Body=body))
