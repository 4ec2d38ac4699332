"""How a user's history becomes the sequence model's inputs: one home for training and serving.

A history is the user's latest ``HISTORY_LENGTH`` engagements, oldest first. Each one is a movie, an
event kind and the gap since the engagement before it; the query adds the gap from the latest one to
"now" (training: the time of the next engagement; serving: the request). Gaps are log-scale buckets,
so a minute and a year are both a handful of buckets away from an hour. Numpy only (the layer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from movierec import segments
from movierec.data.dataset import InteractionKind, Users
from movierec.history import HISTORY_LENGTH

GAP_BUCKETS = 20
"""Bucket 0: no previous engagement in view (the first of a history, or padding); 1..19: log2 minutes."""
KINDS = max(InteractionKind) + 2
"""Kind index 0 is padding; an ``InteractionKind`` k is index k + 1."""
PROFILE_ATTRIBUTES = (segments.REGION, segments.AGE_BAND)
"""Profile features are one-hot segment names of these attributes (what the profile hash carries)."""
MIN_PROFILE_USERS = 20  # a segment value with fewer users gets no column (it would only be noise)

IntMatrix = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


def gap_bucket(seconds: npt.ArrayLike) -> IntMatrix:
    """Bucket of a gap in seconds (never 0: that means "unknown"); negative gaps count as 0 s."""
    minutes = np.maximum(np.asarray(seconds, dtype=np.float64), 0.0) / 60.0
    bucket = np.floor(np.log2(1.0 + minutes)).astype(np.int64)
    out: IntMatrix = 1 + np.clip(bucket, 0, GAP_BUCKETS - 2)
    return out


@dataclass(frozen=True)
class EncodedHistories:
    """(users, length) inputs, left-padded so each user's latest engagement is the last column."""

    items: IntMatrix  # movie index; padding is ``n_movies`` (a zero row)
    kinds: IntMatrix  # kind index, 0 = padding
    gaps: IntMatrix  # gap bucket since the previous engagement, 0 = none in view
    valid: npt.NDArray[np.bool_]
    query_gap: IntMatrix  # (users,): bucket of now - latest engagement; 0 when the history is empty

    def __len__(self) -> int:
        return len(self.items)


def encode_windows(
    movies: npt.NDArray[np.integer[Any]],
    kinds: npt.NDArray[np.integer[Any]],
    timestamps: npt.NDArray[np.integer[Any]],
    index: IntMatrix,
    pad_movie: int,
) -> tuple[IntMatrix, IntMatrix, IntMatrix, npt.NDArray[np.bool_]]:
    """Gather flat event columns through ``index`` ((rows, length), -1 = padding) into model inputs.

    The first valid column of each row gets gap bucket 0: what came before it is out of view, as it
    is for the oldest engagement serving reads.
    """
    valid = index >= 0
    safe = np.where(valid, index, 0)
    items = np.where(valid, np.asarray(movies, dtype=np.int64)[safe], pad_movie)
    kind = np.where(valid, np.asarray(kinds, dtype=np.int64)[safe] + 1, 0)
    time = np.asarray(timestamps, dtype=np.int64)[safe]
    previous_valid = np.zeros_like(valid)
    previous_valid[:, 1:] = valid[:, :-1]
    gap_seconds = np.zeros(index.shape, dtype=np.int64)
    gap_seconds[:, 1:] = time[:, 1:] - time[:, :-1]
    gaps = np.where(valid & previous_valid, gap_bucket(gap_seconds), 0)
    return items, kind, gaps, valid


def encode_history(
    movie_indexes: Sequence[int] | npt.NDArray[np.integer[Any]],
    kinds: Sequence[int] | npt.NDArray[np.integer[Any]],
    timestamps: Sequence[int] | npt.NDArray[np.integer[Any]],
    now: int,
    pad_movie: int,
    length: int = HISTORY_LENGTH,
) -> EncodedHistories:
    """One user's history (oldest first, already mapped to movie indexes) as a batch of one."""
    movies = np.asarray(movie_indexes, dtype=np.int64)[-length:] if length else np.zeros(0, np.int64)
    kind = np.asarray(kinds, dtype=np.int64)[-length:] if length else np.zeros(0, np.int64)
    time = np.asarray(timestamps, dtype=np.int64)[-length:] if length else np.zeros(0, np.int64)
    n = len(movies)
    index = np.full((1, length), -1, dtype=np.int64)
    index[0, length - n :] = np.arange(n)
    items, kind_index, gaps, valid = encode_windows(movies, kind, time, index, pad_movie)
    query = gap_bucket(now - time[-1:]) if n else np.zeros(1, dtype=np.int64)
    return EncodedHistories(items, kind_index, gaps, valid, query.astype(np.int64))


# ---- profile features -----------------------------------------------------------------------------


def _segments_by_user(users: Users) -> tuple[list[tuple[str | None, ...]], IntMatrix]:
    """(segment names per distinct (region, age), each user's row in it): segments are named once
    per distinct profile, not once per user (millions of users, a few hundred profiles)."""
    ages = users.age.tolist() if len(users.age) else [0] * len(users)
    distinct: dict[tuple[str, int], int] = {}
    keyed = zip(users.region, ages, strict=True)
    rows = np.fromiter((distinct.setdefault(key, len(distinct)) for key in keyed), np.int64, len(users))
    keys = list(distinct)
    profiles = Users(
        [""] * len(keys), [r for r, _ in keys], age=np.asarray([a for _, a in keys], dtype=np.int16)
    )
    named = [segments.dataset_segments(attribute, profiles) for attribute in PROFILE_ATTRIBUTES]
    return list(zip(*named, strict=True)), rows


def profile_names(users: Users, min_users: int = MIN_PROFILE_USERS) -> list[str]:
    """The profile columns a dataset supports: segment names with at least ``min_users`` users."""
    distinct, rows = _segments_by_user(users)
    weight = np.bincount(rows, minlength=len(distinct))
    names: list[str] = []
    for attribute in range(len(PROFILE_ATTRIBUTES)):
        counts: dict[str, int] = {}
        for segment_names, n in zip(distinct, weight.tolist(), strict=True):
            if (name := segment_names[attribute]) is not None:
                counts[name] = counts.get(name, 0) + n
        names += sorted(name for name, n in counts.items() if n >= min_users)
    return names


def dataset_profiles(users: Users, names: Sequence[str]) -> FloatArray:
    """(users, len(names)) one-hot profile features from the dataset's columns."""
    column = {name: j for j, name in enumerate(names)}
    distinct, rows = _segments_by_user(users)
    table = np.zeros((len(distinct), len(names)), dtype=np.float32)
    for row, segment_names in enumerate(distinct):
        for name in segment_names:
            if name is not None and (j := column.get(name)) is not None:
                table[row, j] = 1.0
    out: FloatArray = table[rows]
    return out


def profile_vector(profile: Mapping[str, str] | None, names: Sequence[str], now_year: int) -> FloatArray:
    """The same features from a serving profile hash (``region``, ``birth_year``, ...)."""
    out = np.zeros(len(names), dtype=np.float32)
    if not profile or not names:
        return out
    column = {name: j for j, name in enumerate(names)}
    for attribute in PROFILE_ATTRIBUTES:
        segment = segments.segment_of(attribute, profile, now_year)
        if segment is not None and (j := column.get(segment)) is not None:
            out[j] = 1.0
    return out
