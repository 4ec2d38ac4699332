"""The published data format: ranked item lists and the version manifest, as stored in Redis.

A list is compact JSON: ``[[movie_id, score, title, [genres], year], ...]``, denormalised so the hot path
answers from one GET with no catalogue lookup.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, overload

import orjson

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


def encode_items(items: Iterable[Item]) -> bytes:
    return ItemEncoder().encode(items)


class ItemEncoder:
    """``encode_items`` with each movie's ``"title",[genres],year`` cached: byte-identical output.

    A publication encodes the same few thousand movies into millions of lists; their metadata is the
    same in every one. One encoder per catalogue: a movie's metadata must not change under it.
    """

    def __init__(self) -> None:
        self._tails: dict[int, str] = {}

    def encode(self, items: Iterable[Item]) -> bytes:
        """Compact JSON rows ``[movie_id,score,"title",[genres],year]``, as ``json.dumps`` writes them."""
        parts = []
        for item in items:
            tail = self._tails.get(item.movie_id)
            if tail is None:
                metadata = [item.title, list(item.genres), item.year]
                tail = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)[1:]
                self._tails[item.movie_id] = tail
            # float(): a numpy scalar's repr is not JSON; a float's repr is what json.dumps writes.
            parts.append(f"[{int(item.movie_id)},{float(round(item.score, 6))!r},{tail}")
        return ("[" + ",".join(parts) + "]").encode()


def decode_items(raw: bytes) -> list[Item]:
    return list(LazyItems(raw))


class LazyItems(Sequence[Item]):
    """A published list, parsed once; ``Item``s are built only for the rows a caller reaches.

    The hot path reads a 100-item list to answer with 10: building all 100 would be most of its work.
    """

    __slots__ = ("_rows",)

    def __init__(self, raw: bytes) -> None:
        self._rows: list[list[Any]] = orjson.loads(raw)

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [_item(row) for row in self._rows[index]]
        return _item(self._rows[index])

    def __iter__(self) -> Iterator[Item]:
        return map(_item, self._rows)


def _item(row: list[Any]) -> Item:
    movie_id, score, title, genres, year = row
    return Item(int(movie_id), float(score), title, tuple(genres), year)


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
