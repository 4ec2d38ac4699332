"""Users' ordered histories for the sequence model: training windows (every prefix is a sample) and
the history each evaluation case is scored from.

No leakage by construction: a training window's input at position j predicts the engagement right
after it, and the model's attention is causal, so a prediction reads only what came before its target;
an evaluation case reads the latest ``length`` engagements of the pairs it is given (train for
validation, train + validation for test), which never hold the held-out pair. Both are tested.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from movierec.data.dataset import InteractionKind
from movierec.sequence_encoding import EncodedHistories, encode_windows, gap_bucket
from training_job.data import Positives

IntArray = npt.NDArray[np.int32]
LongArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Sequences:
    """Every user's engagements in time order: rows ``start[u]:start[u + 1]`` are user ``u``'s."""

    movie: LongArray
    timestamp: LongArray
    kind: LongArray  # InteractionKind
    start: LongArray  # (n_users + 1,)
    n_movies: int

    @classmethod
    def from_positives(cls, positives: Positives, kind: npt.NDArray[np.integer] | None = None) -> Sequences:
        """From pairs in their canonical (user, timestamp, movie) order. ``kind`` per pair (aligned
        with ``positives``); without it every pair is a rating (the NCF files carry no kind)."""
        if len(positives) and np.any(np.diff(positives.user) < 0):
            raise ValueError("positives must be sorted by user (the canonical order)")
        counts = positives.user_counts()
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        kinds = (
            np.full(len(positives), int(InteractionKind.RATING), dtype=np.int64)
            if kind is None
            else np.asarray(kind, dtype=np.int64)
        )
        return cls(
            positives.movie.astype(np.int64),
            positives.timestamp.astype(np.int64),
            kinds,
            start,
            positives.n_movies,
        )

    @property
    def n_users(self) -> int:
        return len(self.start) - 1

    def counts(self) -> LongArray:
        out: LongArray = np.diff(self.start)
        return out


@dataclass(frozen=True)
class Windows:
    """Training samples: (windows, length) inputs and, per position, the engagement that followed."""

    inputs: EncodedHistories  # ``query_gap`` is unused here: see ``query_gaps``
    target: LongArray  # (windows, length) movie index, -1 where no sample
    query_gaps: LongArray  # (windows, length) bucket of target time - input time
    user: LongArray  # (windows,)

    def __len__(self) -> int:
        return len(self.target)

    @property
    def n_targets(self) -> int:
        return int((self.target >= 0).sum())


def training_windows(seq: Sequences, length: int, stride: int | None = None) -> Windows:
    """Windows from each user's latest engagement back, right-aligned like serving's history: every
    engagement but a user's first is the target of exactly one position.

    Windows start every ``stride`` engagements (default ``length``: no overlap) and a window's
    targets are its last ``stride`` positions only (all of them in a user's oldest window), so with
    ``stride < length`` each prediction reads at least ``length - stride`` engagements, closer to the
    full history serving reads, for ``length / stride`` times the encoder work.
    """
    stride = min(stride or length, length)
    counts = seq.counts()
    samples = np.maximum(counts - 1, 0)  # engagement i (i >= 1) is predicted from engagement i - 1
    per_user = np.where(samples > 0, 1 + -(-np.maximum(samples - length, 0) // stride), 0)
    user = np.repeat(np.arange(seq.n_users, dtype=np.int64), per_user)
    first = np.concatenate([[0], np.cumsum(per_user)[:-1]]).astype(np.int64)
    w = np.arange(len(user), dtype=np.int64) - first[user]
    end = seq.start[user] + counts[user] - 1 - w * stride  # flat index one past the last input
    index = end[:, None] - length + np.arange(length)[None, :]
    index = np.where(index >= seq.start[user][:, None], index, -1)
    items, kinds, gaps, valid = encode_windows(seq.movie, seq.kind, seq.timestamp, index, seq.n_movies)
    oldest = (w == per_user[user] - 1)[:, None]
    owned = valid & (oldest | (np.arange(length)[None, :] >= length - stride))
    target_index = np.where(valid, index + 1, 0)
    target = np.where(owned, seq.movie[target_index], -1)
    query_seconds = seq.timestamp[target_index] - seq.timestamp[np.where(valid, index, 0)]
    query_gaps = np.where(valid, gap_bucket(query_seconds), 0)
    inputs = EncodedHistories(items, kinds, gaps, valid, np.zeros(len(user), dtype=np.int64))
    return Windows(inputs, target, query_gaps, user)


def latest_histories(
    seq: Sequences, users: npt.NDArray[np.integer], now: LongArray, length: int
) -> EncodedHistories:
    """Each user's latest ``length`` engagements in ``seq`` (one row per entry of ``users``), scored as
    of ``now`` (the held-out pair's time). A user with none gets an empty row (query gap 0)."""
    users = np.asarray(users, dtype=np.int64)
    counts = seq.counts()[users]
    end = seq.start[users] + counts
    index = end[:, None] - length + np.arange(length)[None, :]
    index = np.where(index >= seq.start[users][:, None], index, -1)
    items, kinds, gaps, valid = encode_windows(seq.movie, seq.kind, seq.timestamp, index, seq.n_movies)
    last_time = (
        seq.timestamp[np.maximum(end - 1, 0)] if len(seq.timestamp) else np.zeros(len(users), np.int64)
    )
    query = np.where(counts > 0, gap_bucket(np.asarray(now, dtype=np.int64) - last_time), 0)
    return EncodedHistories(items, kinds, gaps, valid, query.astype(np.int64))


def history_rows(histories: EncodedHistories, rows: npt.NDArray[np.integer] | slice) -> EncodedHistories:
    return EncodedHistories(
        histories.items[rows],
        histories.kinds[rows],
        histories.gaps[rows],
        histories.valid[rows],
        histories.query_gap[rows],
    )
