"""The published data format: ranked item lists and the version manifest, as stored in Redis.

A list is compact JSON: ``[[movie_id, score, title, [genres], year], ...]``, denormalised so the hot path
answers from one GET with no catalogue lookup.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Item:
    movie_id: int
    score: float
    title: str
    genres: tuple[str, ...]
    year: int | None


@dataclass(frozen=True)
class MovieInfo:
    title: str
    genres: tuple[str, ...]
    year: int | None


def encode_items(items: list[Item]) -> bytes:
    rows = [[i.movie_id, round(i.score, 6), i.title, list(i.genres), i.year] for i in items]
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()


def decode_items(raw: bytes) -> list[Item]:
    return [Item(int(m), float(s), t, tuple(g), y) for m, s, t, g, y in json.loads(raw)]


def encode_movie_info(info: MovieInfo) -> str:
    return json.dumps(
        {"title": info.title, "genres": list(info.genres), "year": info.year}, separators=(",", ":")
    )


def decode_movie_info(raw: bytes | str) -> MovieInfo:
    document = json.loads(raw)
    return MovieInfo(document.get("title", ""), tuple(document.get("genres", ())), document.get("year"))


def new_version_id(now: float | None = None) -> str:
    """Sortable and unique enough for one publisher: UTC time to the millisecond."""
    moment = time.time() if now is None else now
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(moment)) + f"{int(moment * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class Manifest:
    version: str
    created_at: float
    data_cutoff: float
    segment_attribute: str = "region"
    segments: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    users_published: int = 0
    trending_weight: float = 0.3
    model_version: str | None = None
    artifact_uri: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        document: dict[str, Any] = json.loads(raw)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in document.items() if k in known})
