"""What a poller keeps between and reports about drains: checkpoints per shard, and the counts of a drain."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class PollStats:
    """What one drain did; ``records_delivered`` counts redeliveries too."""

    shards: int = 0
    invocations: int = 0
    records_delivered: int = 0
    records_processed: int = 0
    function_errors: int = 0
    partial_failures: int = 0
    retries: int = 0
    bisections: int = 0
    records_dead_lettered: int = 0
    batches_dead_lettered: int = 0

    def add(self, other: PollStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def summary(self) -> str:
        return (
            f"{self.records_processed} records processed in {self.invocations} invocations over "
            f"{self.shards} shards; {self.retries} retries, {self.bisections} bisections, "
            f"{self.records_dead_lettered} records to the on-failure destination"
        )


@dataclass
class CheckpointStore:
    """Per mapping (function and stream), the last processed sequence number of each shard.

    A stream recreated under the same name (a fresh local cloud) starts over: the file remembers
    the stream's creation time.
    """

    path: Path
    stream_created: str = ""
    shards: dict[str, str] = field(default_factory=dict)

    @classmethod
    def open(
        cls, state_dir: Path, function_id: str, stream_name: str, stream_created: str
    ) -> CheckpointStore:
        path = state_dir / "kinesis" / f"{stream_name}--{function_id}.json"
        store = cls(path=path, stream_created=stream_created)
        if path.is_file():
            try:
                saved = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = {}
            if isinstance(saved, dict) and saved.get("stream_created") == stream_created:
                store.shards = {str(k): str(v) for k, v in (saved.get("shards") or {}).items()}
        return store

    def get(self, shard_id: str) -> str | None:
        return self.shards.get(shard_id)

    def set(self, shard_id: str, sequence_number: str) -> None:
        self.shards[shard_id] = sequence_number
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        document = {"stream_created": self.stream_created, "shards": self.shards}
        temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, self.path)  # atomic: a crash never leaves half a checkpoint file
