"""The Kinesis event-source mapping, emulated (``poll``): the poller (``poller``), the event it delivers
(``records``) and its checkpoints and counts (``progress``). The names below are the interface."""

from infra.local.kinesis.poller import LOCAL_RETRY_CAP, KinesisPoller
from infra.local.kinesis.progress import CheckpointStore, PollStats
from infra.local.kinesis.records import StreamRecord, kinesis_event

__all__ = [
    "LOCAL_RETRY_CAP",
    "CheckpointStore",
    "KinesisPoller",
    "PollStats",
    "StreamRecord",
    "kinesis_event",
]
