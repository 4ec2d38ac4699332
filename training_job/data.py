"""Dataset -> compact implicit-feedback arrays, and the NCF file format (train.rating, test.rating,
test.negative) that the benchmark reads and ``make-ncf-split`` writes.

Every interaction is a positive. One row per (user, movie) pair keeps 25M interactions at
~25 bytes a row; nothing here loops over rows in Python.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

from movierec.data.dataset import UNKNOWN, Dataset, InteractionKind, Interactions, Movies, Users

TRAIN_FILE = "train.rating"
TEST_FILE = "test.rating"
NEGATIVE_FILE = "test.negative"

IntArray = npt.NDArray[np.int32]
LongArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class EventWeights:
    """Loss weight of a positive, by the strongest kind of interaction seen for the pair.

    A weight of 0 drops that kind from training altogether.
    """

    rating: float = 1.0
    watch: float = 1.0
    click: float = 0.5
    add_to_list: float = 1.0

    def by_kind(self) -> FloatArray:
        table = np.zeros(max(InteractionKind) + 1, dtype=np.float32)
        table[InteractionKind.RATING] = self.rating
        table[InteractionKind.WATCH] = self.watch
        table[InteractionKind.CLICK] = self.click
        table[InteractionKind.ADD_TO_LIST] = self.add_to_list
        return table


@dataclass(frozen=True)
class Positives:
    """One row per (user, movie) pair, sorted by (user, timestamp, movie).

    ``timestamp`` is the pair's first engagement (when the movie became "seen"); ``rating`` is the
    latest explicit rating, NaN when the pair has none.
    """

    user: IntArray
    movie: IntArray
    weight: FloatArray
    timestamp: LongArray
    rating: FloatArray
    n_users: int
    n_movies: int

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Positives:
        return Positives(
            self.user[rows],
            self.movie[rows],
            self.weight[rows],
            self.timestamp[rows],
            self.rating[rows],
            self.n_users,
            self.n_movies,
        )

    def keys(self) -> LongArray:
        """user * n_movies + movie: one sortable int64 per pair."""
        return self.user.astype(np.int64) * self.n_movies + self.movie

    def user_counts(self) -> LongArray:
        return np.bincount(self.user, minlength=self.n_users)

    def movie_counts(self) -> LongArray:
        return np.bincount(self.movie, minlength=self.n_movies)


def _group_starts(sorted_keys: LongArray) -> LongArray:
    if len(sorted_keys) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]).astype(np.int64)


def positives_from_columns(
    user: npt.NDArray[np.integer],
    movie: npt.NDArray[np.integer],
    weight: FloatArray,
    timestamp: LongArray,
    rating: FloatArray,
    n_users: int,
    n_movies: int,
) -> Positives:
    """Collapse raw event rows to one row per pair: max weight, first timestamp, last rating."""
    keep = weight > 0
    user_l = user[keep].astype(np.int64)
    movie_l = movie[keep].astype(np.int64)
    weight, timestamp, rating = weight[keep], timestamp[keep], rating[keep]
    key = user_l * n_movies + movie_l
    order = np.lexsort((timestamp, key))
    key_s = key[order]
    starts = _group_starts(key_s)
    ends = np.r_[starts[1:], len(key_s)].astype(np.int64) if len(starts) else starts
    pair_weight = np.maximum.reduceat(weight[order], starts) if len(starts) else weight[:0]
    pair_time = timestamp[order][starts]
    # Last rating per pair: carry the latest non-NaN value forward within each group.
    rating_s = rating[order]
    rated = ~np.isnan(rating_s)
    last_rated = np.where(rated, np.arange(len(rating_s)), -1)
    np.maximum.accumulate(last_rated, out=last_rated)
    last = last_rated[ends - 1] if len(ends) else last_rated[:0]
    pair_rating = np.where(last >= starts, rating_s[np.maximum(last, 0)], np.nan).astype(np.float32)
    pair_key = key_s[starts]
    pair_user = (pair_key // n_movies).astype(np.int32)
    pair_movie = (pair_key % n_movies).astype(np.int32)
    # Canonical order: by user, then time, then movie (the split relies on it).
    final = np.lexsort((pair_movie, pair_time, pair_user))
    return Positives(
        pair_user[final],
        pair_movie[final],
        pair_weight[final].astype(np.float32),
        pair_time[final].astype(np.int64),
        pair_rating[final],
        n_users,
        n_movies,
    )


def implicit_feedback(
    dataset: Dataset, weights: EventWeights | None = None, cutoff: int | None = None
) -> Positives:
    """Every interaction strictly before ``cutoff`` (epoch seconds) becomes a weighted positive.

    Filtering happens on raw events before pairs are merged, so a re-rating after the cutoff cannot
    change a pair's weight or rating: nothing leaks from the future.
    """
    inter = dataset.interactions
    rows = np.ones(len(inter), dtype=bool) if cutoff is None else inter.timestamp < cutoff
    kind = inter.kind[rows]
    weight = (weights or EventWeights()).by_kind()[kind]
    rating = np.where(kind == InteractionKind.RATING, inter.value[rows], np.nan).astype(np.float32)
    return positives_from_columns(
        inter.user[rows],
        inter.movie[rows],
        weight,
        inter.timestamp[rows],
        rating,
        len(dataset.users),
        len(dataset.movies),
    )


# ---- NCF files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NcfData:
    """The NCF benchmark protocol: training pairs, one held-out item per user, 99 negatives each."""

    train: Positives
    test_user: IntArray
    test_movie: IntArray
    negatives: IntArray  # (len(test_user), n) movie indexes; may repeat the test item (deduped later)
    test_rating: FloatArray
    test_timestamp: LongArray


def _read_table(path: Path, names: list[str], types: list[pa.DataType]) -> pa.Table:
    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=names),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(column_types=dict(zip(names, types, strict=True))),
    )


_RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_RATING_TYPES = [pa.int32(), pa.int32(), pa.float32(), pa.int64()]


def _column(table: pa.Table, name: str) -> npt.NDArray[np.generic]:
    return np.asarray(table.column(name).to_numpy())


def read_ncf(train: Path, test: Path, negatives: Path) -> NcfData:
    train_t = _read_table(train, _RATING_COLUMNS, _RATING_TYPES)
    test_t = _read_table(test, _RATING_COLUMNS, _RATING_TYPES)
    test_user = _column(test_t, "user").astype(np.int32)
    test_movie = _column(test_t, "item").astype(np.int32)
    rows: dict[int, list[int]] = {}
    for line in negatives.read_text().splitlines():
        if not line.strip():
            continue
        head, *items = line.split("\t")
        user = int(head.strip("()").split(",")[0])
        rows[user] = [int(item) for item in items if item]
    width = max((len(r) for r in rows.values()), default=0)
    negative = np.full((len(test_user), width), -1, dtype=np.int32)  # -1: padding, never scored
    for row, user in enumerate(test_user.tolist()):
        if user not in rows:
            raise ValueError(f"{negatives}: no negatives for test user {user}")
        picked = rows[user]
        negative[row, : len(picked)] = picked
    train_user = _column(train_t, "user").astype(np.int32)
    train_movie = _column(train_t, "item").astype(np.int32)
    n_users = int(max(train_user.max(initial=-1), test_user.max(initial=-1))) + 1
    n_movies = int(max(train_movie.max(initial=-1), test_movie.max(initial=-1), negative.max(initial=-1))) + 1
    rating = _column(train_t, "rating").astype(np.float32)
    positives = positives_from_columns(
        train_user,
        train_movie,
        np.ones(len(train_user), dtype=np.float32),
        _column(train_t, "timestamp").astype(np.int64),
        rating,
        n_users,
        n_movies,
    )
    test_rating = _column(test_t, "rating").astype(np.float32)
    test_time = _column(test_t, "timestamp").astype(np.int64)
    return NcfData(positives, test_user, test_movie, negative, test_rating, test_time)


def _write_ratings(
    path: Path, user: IntArray, movie: IntArray, rating: FloatArray, timestamp: LongArray
) -> None:
    table = pa.table(
        {
            "user": pa.array(user, pa.int32()),
            "item": pa.array(movie, pa.int32()),
            # Implicit-only pairs have no rating; the format needs a number, and 1 means "positive".
            "rating": pa.array(np.nan_to_num(rating, nan=1.0), pa.float32()),
            "timestamp": pa.array(timestamp, pa.int64()),
        }
    )
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, delimiter="\t"))
    path.write_bytes(buffer.getvalue())


def write_ncf(out_dir: Path, data: NcfData) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    train = data.train
    _write_ratings(out_dir / TRAIN_FILE, train.user, train.movie, train.rating, train.timestamp)
    _write_ratings(
        out_dir / TEST_FILE, data.test_user, data.test_movie, data.test_rating, data.test_timestamp
    )
    lines = [
        f"({user},{movie})\t" + "\t".join(str(m) for m in row if m >= 0)
        for user, movie, row in zip(
            data.test_user.tolist(), data.test_movie.tolist(), data.negatives.tolist(), strict=True
        )
    ]
    (out_dir / NEGATIVE_FILE).write_text("\n".join(lines) + "\n")


def make_ncf_split(dataset: Dataset, n_negatives: int = 99, seed: int = 0) -> tuple[NcfData, Dataset]:
    """The NCF protocol on any dataset: ids re-numbered from 0, each user's latest pair held out.

    Users with fewer than two pairs are dropped (they could not be both trained and tested). Returns
    the split and the compacted dataset whose row ``i`` is NCF id ``i`` (to map ids back).
    """
    from training_job.sampling import sample_eval_negatives  # the sampler lives with its tests

    everything = implicit_feedback(dataset, EventWeights(1.0, 1.0, 1.0, 1.0))
    counts = everything.user_counts()
    kept = everything.take(counts[everything.user] >= 2)
    compact, user_rows, movie_rows = compact_ids(kept)
    is_last = np.r_[compact.user[1:] != compact.user[:-1], True] if len(compact) else np.zeros(0, bool)
    train = compact.take(~is_last)
    test = compact.take(is_last)
    rng = np.random.default_rng(seed)
    negatives = sample_eval_negatives(compact, test.user, n_negatives, rng)
    data = NcfData(train, test.user, test.movie, negatives, test.rating, test.timestamp)
    return data, subset_dataset(dataset, user_rows, movie_rows, compact)


def compact_ids(positives: Positives) -> tuple[Positives, IntArray, IntArray]:
    """Re-number users and movies that occur, in their original row order (0..n-1)."""
    user_rows = np.unique(positives.user).astype(np.int32)
    movie_rows = np.unique(positives.movie).astype(np.int32)
    user = np.searchsorted(user_rows, positives.user).astype(np.int32)
    movie = np.searchsorted(movie_rows, positives.movie).astype(np.int32)
    compact = Positives(
        user,
        movie,
        positives.weight,
        positives.timestamp,
        positives.rating,
        len(user_rows),
        len(movie_rows),
    )
    return compact, user_rows, movie_rows


def subset_users(users: Users, rows: npt.NDArray[np.integer]) -> Users:
    picked = rows.tolist()
    return Users(
        ids=[users.ids[i] for i in picked],
        region=[users.region[i] for i in picked],
        gender=[users.gender[i] for i in picked] if users.gender else [],
        age=users.age[rows] if len(users.age) else users.age,
        occupation=[users.occupation[i] for i in picked] if users.occupation else [],
        country=[users.country[i] for i in picked] if users.country else [],
    )


def subset_movies(movies: Movies, rows: npt.NDArray[np.integer]) -> Movies:
    picked = rows.tolist()
    return Movies(
        ids=movies.ids[rows],
        titles=[movies.titles[i] for i in picked],
        genres=[movies.genres[i] for i in picked],
        year=movies.year[rows],
    )


def subset_dataset(
    dataset: Dataset, user_rows: IntArray, movie_rows: IntArray, positives: Positives
) -> Dataset:
    """The dataset restricted to the given rows, with ``positives`` as its (rating-kind) interactions."""
    interactions = Interactions(
        user=positives.user.copy(),
        movie=positives.movie.copy(),
        value=np.nan_to_num(positives.rating, nan=1.0).astype(np.float32),
        timestamp=positives.timestamp.copy(),
        kind=np.full(len(positives), InteractionKind.RATING, dtype=np.int8),
    )
    return Dataset(
        dataset.name,
        subset_users(dataset.users, user_rows),
        subset_movies(dataset.movies, movie_rows),
        interactions,
    )


def ncf_entities(n_users: int, n_movies: int) -> tuple[Users, Movies]:
    """Users and movies for NCF ids, which carry no side information: user ``"u"``, movie ``i + 1``
    (movie ids are positive)."""
    users = Users(ids=[str(u) for u in range(n_users)], region=[UNKNOWN] * n_users)
    movies = Movies(
        ids=np.arange(1, n_movies + 1, dtype=np.int64),
        titles=[""] * n_movies,
        genres=[()] * n_movies,
        year=np.zeros(n_movies, dtype=np.int16),
    )
    return users, movies
