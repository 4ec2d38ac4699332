"""The local stand-in for the served-list subscription: CloudWatch Logs subscription filter -> Firehose
-> ``s3://$ARTIFACT_BUCKET/served/YYYY/MM/DD/HH/`` (template.yaml, ``ServedListSubscription``).

The recommend function's EMF documents are read back from its output (``EmfTap``); each one holding the
served-list record (``movierec.served.SERVED_LIST_KEY``) is delivered as one newline-terminated JSON line
into the moto bucket, under the prefix and the hour partition Firehose uses. The attribution stage reads
it there by the same code as on AWS (``training_job/attribution_stage.py``).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from movierec.served import SERVED_LIST_KEY, SERVED_PREFIX


class ServedLogDelivery:
    def __init__(
        self, put_object: Callable[[str, bytes], None], clock: Callable[[], float] = time.time
    ) -> None:
        self._put = put_object
        self._clock = clock

    def observe_emf(self, document: Mapping[str, Any]) -> None:
        if SERVED_LIST_KEY not in document:
            return
        partition = time.strftime("%Y/%m/%d/%H", time.gmtime(self._clock()))
        key = f"{SERVED_PREFIX}{partition}/local-{uuid.uuid4()}"
        try:
            self._put(key, orjson.dumps(document) + b"\n")
        except Exception as error:  # like a Firehose that cannot deliver: the answer was sent anyway
            print(f"served-list delivery failed: {error}", file=sys.stderr)


def s3_delivery(s3: Any, bucket: str) -> ServedLogDelivery:
    return ServedLogDelivery(lambda key, body: s3.put_object(Bucket=bucket, Key=key, Body=body))
