"""A thin reader of Feast's Redis online store: the features of one user and the candidate movies in one
pipelined round trip, without importing Feast (docs/features.md: the SDK's import time and package
size do not fit the recommend Lambda).

Feast's documented layout (``feast/infra/online_stores/redis.py``, ``key_encoding_utils.py``; entity
key serialisation version 3), which ``tests/integration/test_feature_store.py`` holds this reader to by
comparing it with ``FeatureStore.get_online_features`` on the same entities:

- key: ``uint32 n_keys``, then per join key ``uint32 STRING(2)``, ``uint32 len``, the name; then per
  value ``uint32 value type``, ``uint32 len``, the bytes (``INT64``: ``<q``, ``STRING``: UTF-8); then
  the project name. One Redis hash per entity holds every view of that entity.
- field of a feature: ``murmur3_32(f"{view}:{feature}")`` as 4 little-endian bytes; ``_ts:{view}`` holds
  the row's event time as a serialised ``google.protobuf.Timestamp``.
- value: a serialised ``feast.types.Value`` protobuf (``float_val`` = 6, ``string_val`` = 2,
  ``int64_val`` = 4, ``string_list_val`` = 12, ``float_list_val`` = 16, ...).

A missing hash, a missing field or an unset value gives the feature's documented default
(``movierec.feature_views``). As ``get_online_features``, the reader applies no TTL (a view's TTL bounds
point-in-time joins); each row carries its event time for a caller that wants to judge staleness.
A value that does not decode raises :class:`FeatureDecodeError` naming the field.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from movierec.feature_views import PROJECT, EntitySpec, FeatureSpec, FeatureValue, Kind, ViewSpec
from movierec.stores.cache import REDIS_ERRORS, RedisClient

_STRING, _INT64 = 2, 4  # feast.types.ValueType
_FLOAT_VAL_TAG = 0x35  # field 6 (float_val), wire type 5 (fixed32)
_FLOAT32 = struct.Struct("<f")


class FeatureDecodeError(ValueError):
    """An online value is not the protobuf its view's schema says."""


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, unsigned (what ``mmh3.hash(key, signed=False)`` returns)."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    length = len(data)
    tail = length - length % 4
    for i in range(0, tail, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    rest = length & 3
    if rest == 3:
        k ^= data[tail + 2] << 16
    if rest >= 2:
        k ^= data[tail + 1] << 8
    if rest >= 1:
        k ^= data[tail]
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= length
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


@cache
def feature_field(view: str, feature: str) -> bytes:
    """The hash field of ``view:feature`` (Feast's ``_mmh3``)."""
    return struct.pack("<I", murmur3_32(f"{view}:{feature}".encode()))


def entity_key(entity: EntitySpec, value: str | int, project: str = PROJECT) -> bytes:
    """The Redis key of one entity's hash (Feast's ``serialize_entity_key`` v3 + project)."""
    name = entity.join_key.encode()
    if entity.kind is Kind.INT64:
        body, kind = struct.pack("<q", int(value)), _INT64
    else:
        body, kind = str(value).encode(), _STRING
    return b"".join(
        (
            struct.pack("<III", 1, _STRING, len(name)),
            name,
            struct.pack("<II", kind, len(body)),
            body,
            project.encode(),
        )
    )


# ---- a minimal protobuf reader: just what feast.types.Value and Timestamp use ----------------------------


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(data):
            raise FeatureDecodeError("truncated varint")
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of each field; fixed32/64 values as raw bytes."""
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(data):
        tag, i = _varint(data, i)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, i = _varint(data, i)
        elif wire == 1:
            value, i = data[i : i + 8], i + 8
        elif wire == 5:
            value, i = data[i : i + 4], i + 4
        elif wire == 2:
            size, i = _varint(data, i)
            value, i = data[i : i + size], i + size
        else:
            raise FeatureDecodeError(f"unsupported protobuf wire type {wire}")
        if i > len(data):
            raise FeatureDecodeError("truncated protobuf field")
        out.append((number, wire, value))
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def timestamp_seconds(data: bytes) -> float:
    """A serialised ``google.protobuf.Timestamp`` as epoch seconds."""
    seconds = nanos = 0
    for number, _, value in _fields(data):
        if number == 1 and isinstance(value, int):
            seconds = _signed64(value)
        elif number == 2 and isinstance(value, int):
            nanos = value
    return seconds + nanos / 1e9


def _float_list(raw: bytes) -> tuple[float, ...]:
    values: list[float] = []
    for number, wire, value in _fields(raw):
        if number != 1:
            continue
        if wire == 2 and isinstance(value, bytes):  # packed
            values.extend(struct.unpack(f"<{len(value) // 4}f", value))
        elif wire == 5 and isinstance(value, bytes):
            values.append(struct.unpack("<f", value)[0])
    return tuple(values)


def decode_value(data: bytes, spec: FeatureSpec) -> FeatureValue:
    """A serialised ``feast.types.Value`` as a Python value of the spec's kind; unset: the default."""
    if len(data) == 5 and data[0] == _FLOAT_VAL_TAG:  # the common case, without the general parse
        return float(_FLOAT32.unpack_from(data, 1)[0])
    for number, _, value in _fields(data):
        if number == 6 and isinstance(value, bytes):  # float_val
            return float(struct.unpack("<f", value)[0])
        if number == 5 and isinstance(value, bytes):  # double_val
            return float(struct.unpack("<d", value)[0])
        if number in (3, 4) and isinstance(value, int):  # int32_val, int64_val
            return _signed64(value)  # a negative int32 is sign-extended to 64 bits on the wire
        if number == 2 and isinstance(value, bytes):  # string_val
            return value.decode()
        if number == 12 and isinstance(value, bytes):  # string_list_val: StringList{repeated string val=1}
            return tuple(v.decode() for n, _, v in _fields(value) if n == 1 and isinstance(v, bytes))
        if number == 16 and isinstance(value, bytes):  # float_list_val: FloatList{repeated float val=1}
            return _float_list(value)
        if number == 19:  # null_val
            return spec.default
    return spec.default


# ---- the reader ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OnlineRow:
    """One entity's features in one view, and whether the store had them (else: the defaults)."""

    values: dict[str, FeatureValue]
    found: bool
    event_time: float | None  # epoch seconds of the materialized row


class OnlineFeatureReader:
    """Reads views of ``movierec.feature_views`` from Feast's Redis layout."""

    def __init__(self, client: RedisClient, project: str = PROJECT) -> None:
        self._client = client
        self._project = project

    def _fields_of(self, spec: ViewSpec) -> list[bytes]:
        return [feature_field(spec.name, f.name) for f in spec.features] + [f"_ts:{spec.name}".encode()]

    def _row(self, spec: ViewSpec, reply: Sequence[bytes | None]) -> OnlineRow:
        stamp = reply[-1]
        if stamp is None:
            return OnlineRow(spec.defaults, False, None)
        event_time = timestamp_seconds(stamp)
        values: dict[str, FeatureValue] = {}
        for feature, raw in zip(spec.features, reply[:-1], strict=True):
            try:
                values[feature.name] = feature.default if raw is None else decode_value(raw, feature)
            except (FeatureDecodeError, struct.error, UnicodeDecodeError) as error:
                raise FeatureDecodeError(f"{spec.name}:{feature.name}: {error}") from error
        return OnlineRow(values, True, event_time)

    def read(self, views: Sequence[ViewSpec], ids: Sequence[str | int]) -> dict[str, list[OnlineRow]]:
        """Per view name, one row per id (in order), from one pipelined ``HMGET`` per (view, id)."""
        pipe = self._client.pipeline(transaction=False)
        for spec in views:
            fields = self._fields_of(spec)
            for entity_id in ids:
                pipe.hmget(entity_key(spec.entity, entity_id, self._project), fields)
        replies = pipe.execute()
        out: dict[str, list[OnlineRow]] = {}
        for v, spec in enumerate(views):
            chunk = replies[v * len(ids) : (v + 1) * len(ids)]
            out[spec.name] = [self._row(spec, reply) for reply in chunk]
        return out

    def read_user_and_movies(
        self,
        user_id: str,
        movie_ids: Sequence[int],
        user_views: Sequence[ViewSpec],
        movie_views: Sequence[ViewSpec],
    ) -> tuple[dict[str, OnlineRow], dict[str, list[OnlineRow]]]:
        """The user's rows and the candidates' rows in one round trip (what the online tier needs)."""
        pipe = self._client.pipeline(transaction=False)
        for spec in user_views:
            pipe.hmget(entity_key(spec.entity, user_id, self._project), self._fields_of(spec))
        for spec in movie_views:
            fields = self._fields_of(spec)
            for movie_id in movie_ids:
                pipe.hmget(entity_key(spec.entity, movie_id, self._project), fields)
        replies = pipe.execute()
        user = {spec.name: self._row(spec, replies[i]) for i, spec in enumerate(user_views)}
        movies: dict[str, list[OnlineRow]] = {}
        offset = len(user_views)
        for spec in movie_views:
            chunk = replies[offset : offset + len(movie_ids)]
            movies[spec.name] = [self._row(spec, reply) for reply in chunk]
            offset += len(movie_ids)
        return user, movies

    def read_or_defaults(
        self, views: Sequence[ViewSpec], ids: Sequence[str | int]
    ) -> dict[str, list[OnlineRow]]:
        """``read``, or every row at its defaults when Redis fails: serving never fails on features."""
        try:
            return self.read(views, ids)
        except REDIS_ERRORS:
            return {spec.name: [OnlineRow(spec.defaults, False, None) for _ in ids] for spec in views}
