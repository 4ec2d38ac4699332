"""Temporal splits. Leave-last-out: each user's latest pair is the test item, the one before it the
validation item. A global cut-off (``data.implicit_feedback(cutoff=...)``) drops everything after a
point in time before any of this runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training_job.data import Positives


def leave_last_out(positives: Positives) -> tuple[Positives, Positives]:
    """(rest, last): the latest pair of every user who keeps at least one pair in ``rest``.

    Relies on the canonical (user, timestamp, movie) order of ``Positives``.
    """
    user = positives.user
    if len(user) == 0:
        return positives, positives
    is_last = np.r_[user[1:] != user[:-1], True]
    is_first = np.r_[True, user[1:] != user[:-1]]
    held = is_last & ~is_first  # a user's only pair stays in training
    return positives.take(~held), positives.take(held)


@dataclass(frozen=True)
class Split:
    train: Positives
    validation: Positives  # at most one pair per user
    test: Positives  # at most one pair per user
    new_movies: np.ndarray  # movie indexes held out of train/validation entirely (item cold start)

    def everything(self) -> Positives:
        """All pairs (train + validation + test): what evaluation negatives must avoid."""
        return concat(self.train, self.validation, self.test)


def concat(*parts: Positives) -> Positives:
    first = parts[0]
    joined = Positives(
        np.concatenate([p.user for p in parts]),
        np.concatenate([p.movie for p in parts]),
        np.concatenate([p.weight for p in parts]),
        np.concatenate([p.timestamp for p in parts]),
        np.concatenate([p.rating for p in parts]),
        first.n_users,
        first.n_movies,
    )
    order = np.lexsort((joined.movie, joined.timestamp, joined.user))
    return joined.take(order)


def newest_movies(positives: Positives, fraction: float) -> np.ndarray:
    """The ``fraction`` of movies (with any pair) whose first pair is the most recent: "new releases"."""
    counts = positives.movie_counts()
    present = np.flatnonzero(counts > 0)
    n = round(len(present) * fraction)
    if n <= 0:
        return np.zeros(0, dtype=np.int32)
    first_seen = np.full(positives.n_movies, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_seen, positives.movie, positives.timestamp)
    order = np.lexsort((-present, -first_seen[present]))  # newest first; ties: higher index first
    return np.sort(present[order[:n]]).astype(np.int32)


def temporal_split(positives: Positives, new_movie_fraction: float = 0.0) -> Split:
    """Leave-last-out twice (test, then validation). With ``new_movie_fraction`` > 0 the newest movies
    lose all their train and validation pairs, so the test pairs on them measure item cold start."""
    rest, test = leave_last_out(positives)
    train, validation = leave_last_out(rest)
    new = newest_movies(positives, new_movie_fraction)
    if len(new):
        train = train.take(~np.isin(train.movie, new))
        validation = validation.take(~np.isin(validation.movie, new))
    return Split(train, validation, test, new)
