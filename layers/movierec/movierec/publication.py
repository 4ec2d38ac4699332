"""The published data format: ranked item lists and the version manifest, as stored in Redis.

A list is one compact JSON row per line, best first: ``[movie_id,score,"title",[genres],year]``. It is
denormalised, so the hot path answers with no catalogue lookup, and line-delimited, so it parses only the
~k rows it serves instead of all ~100 (format 2). Lists of format 1, one JSON array of the same rows,
still read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple, overload

import orjson

FORMAT_VERSION = 2


class Item(NamedTuple):
    """One ranked movie. Immutable; a named tuple because every request builds ~10 to ~200 of them, and
    a tuple is built in under half the time of a frozen dataclass (docs/benchmarks.md)."""

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


def item_row(item: Item) -> list[Any]:
    """An item as its row: what each line of a published list holds, as JSON."""
    return [item.movie_id, round(item.score, 6), item.title, list(item.genres), item.year]


def items_from_rows(rows: Iterable[list[Any]]) -> list[Item]:
    return [_item(row) for row in rows]


class ItemEncoder:
    """``encode_items`` with each movie's ``"title",[genres],year`` cached: byte-identical output.

    A publication encodes the same few thousand movies into millions of lists; their metadata is the
    same in every one. One encoder per catalogue: a movie's metadata must not change under it.
    """

    def __init__(self) -> None:
        self._tails: dict[int, str] = {}

    def encode(self, items: Iterable[Item]) -> bytes:
        """One ``item_row`` per line, each as ``json.dumps`` writes it compactly (UTF-8, not escaped)."""
        lines = []
        for item in items:
            tail = self._tails.get(item.movie_id)
            if tail is None:
                metadata = [item.title, list(item.genres), item.year]
                tail = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)[1:]
                self._tails[item.movie_id] = tail
            # float(): a numpy scalar's repr is not JSON; a float's repr is what json.dumps writes.
            lines.append(f"[{int(item.movie_id)},{float(round(item.score, 6))!r},{tail}")
        return "\n".join(lines).encode()


def decode_items(raw: bytes) -> list[Item]:
    return list(LazyItems(raw))


class LazyItems(Sequence[Item]):
    """A published list whose rows are parsed, and made ``Item``s, only when a caller reaches them.

    The hot path reads a 100-item list to answer with 10: parsing all 100 would be most of its work.
    JSON never holds a raw newline inside a value, so each line is exactly one row.
    """

    __slots__ = ("_lines", "_raw")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._lines: list[bytes] | None = None
        if raw.startswith(b"[[") or raw == b"[]":  # format 1: one array; re-encoded row by row once
            self._lines = [orjson.dumps(row) for row in orjson.loads(raw)]

    def _all_lines(self) -> list[bytes]:
        if self._lines is None:
            self._lines = self._raw.split(b"\n") if self._raw else []
        return self._lines

    def __len__(self) -> int:
        return len(self._all_lines())

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [_item(orjson.loads(line)) for line in self._all_lines()[index]]
        return _item(orjson.loads(self._all_lines()[index]))

    def __iter__(self) -> Iterator[Item]:
        if self._lines is not None:
            return (_item(orjson.loads(line)) for line in self._lines)
        return self._iter_raw()

    def _iter_raw(self) -> Iterator[Item]:
        """Row by row from the bytes: a caller that stops after k rows never looks at the rest."""
        raw, start, size = self._raw, 0, len(self._raw)
        while start < size:
            end = raw.find(b"\n", start)
            end = size if end < 0 else end
            yield _item(orjson.loads(raw[start:end]))
            start = end + 1


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
