"""The popularity snapshot: global popularity held in memory, for when Redis is unreachable.

The training job writes it next to the artifact (``SNAPSHOT_KEY``) at every publication. A container
starts from that object, read from S3 at init, or else from the copy the build bundled into the
function's package (``POPULARITY_SNAPSHOT_PATH``); it is refreshed from Redis whenever the global list
is read successfully, so a long-lived container serves the freshest list it has seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from movierec.publication import Item, item_row, items_from_rows

SNAPSHOT_FORMAT = 1
SNAPSHOT_KEY = "snapshots/popularity.json"
"""Where the training job writes the latest snapshot in the artifact bucket."""


@dataclass
class PopularitySnapshot:
    items: list[Item] = field(default_factory=list)
    genres: frozenset[str] = frozenset()
    version: str | None = None

    @classmethod
    def load(cls, path: Path | None) -> PopularitySnapshot:
        """An empty snapshot when no file is bundled; a corrupt file is an error worth failing on."""
        if path is None or not path.exists():
            return cls()
        return cls.parse(path.read_bytes(), str(path))

    @classmethod
    def parse(cls, raw: bytes, source: str) -> PopularitySnapshot:
        """ValueError for anything but a snapshot of the supported format."""
        document = json.loads(raw)
        if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
            found = document.get("format") if isinstance(document, dict) else type(document).__name__
            raise ValueError(f"{source}: unsupported snapshot format {found!r}")
        items = items_from_rows(document["items"])
        return cls(items, frozenset(document.get("genres", ())), document.get("version"))

    def refresh(self, items: list[Item], version: str | None) -> None:
        if items:
            self.items = items
            self.version = version
            self.genres = self.genres | {g for item in items for g in item.genres}


def snapshot_json(items: list[Item], genres: list[str], version: str) -> str:
    return json.dumps(
        {
            "format": SNAPSHOT_FORMAT,
            "version": version,
            "genres": sorted(genres),
            "items": [item_row(item) for item in items],
        },
        separators=(",", ":"),
    )
