"""The ratings file, large, parsed in fixed-size byte chunks by numpy's C parser: 25M ratings never become
25M Python objects, so memory is the final columns (21 bytes a rating) plus one chunk."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt

from training_job.sources.movielens.release import MovieLensFormatError, format_error

CHUNK_BYTES = 32 * 1024 * 1024
"""Ratings are read this many bytes at a time (about 1.2M CSV rows): the loader's working set."""

_RATING_FIELDS = "user, movie, rating, timestamp"


def read_ratings(
    path: Path,
    separator: bytes,
    header: tuple[str, ...] | None,
    movie_ids: npt.NDArray[np.int64],
    user_ids: npt.NDArray[np.int64] | None,
    chunk_bytes: int,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """The rating columns. Users are mapped to rows of ``user_ids`` when given, else left as raw ids.

    Each chunk is converted to the final compact dtypes at once, so the float64 parse buffer never
    outlives its chunk.
    """
    users: list[npt.NDArray[np.int32]] = []
    movies: list[npt.NDArray[np.int32]] = []
    values: list[npt.NDArray[np.float32]] = []
    times: list[npt.NDArray[np.int64]] = []
    for first_line, block in _chunks(path, header, chunk_bytes):
        table = _parse_block(path, first_line, block, separator)
        if len(table) == 0:
            continue
        user_col, movie_col = table[:, 0], table[:, 1]
        movie_rows = _lookup(movie_ids, movie_col)
        if (movie_rows < 0).any():
            row = int(np.flatnonzero(movie_rows < 0)[0])
            line = _line_of_row(block, first_line, row)
            raise format_error(path, line, f"movie {int(movie_col[row])} is not in the movies file")
        if user_ids is not None:
            user_rows = _lookup(user_ids, user_col)
            if (user_rows < 0).any():
                row = int(np.flatnonzero(user_rows < 0)[0])
                line = _line_of_row(block, first_line, row)
                raise format_error(path, line, f"user {int(user_col[row])} is not in the users file")
            users.append(user_rows)
        else:
            users.append(user_col.astype(np.int32))
        movies.append(movie_rows)
        values.append(table[:, 2].astype(np.float32))
        times.append(table[:, 3].astype(np.int64))
    if not users:
        raise MovieLensFormatError(f"{path} holds no ratings")
    # Concatenate one column at a time and drop its chunks, so the peak stays near the final size.
    user_all = np.concatenate(users)
    users.clear()
    movie_all = np.concatenate(movies)
    movies.clear()
    value_all = np.concatenate(values)
    values.clear()
    time_all = np.concatenate(times)
    return user_all, movie_all, value_all, time_all


def _chunks(path: Path, header: tuple[str, ...] | None, chunk_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(number of the first line, bytes) blocks that end on a line boundary."""
    with path.open("rb") as handle:
        line = 1
        if header is not None:
            first = handle.readline().decode("utf-8", "replace").strip().lstrip("\ufeff")
            if [h.strip() for h in first.split(",")] != list(header):
                raise format_error(path, 1, f"expected the header {','.join(header)}, got {first!r}")
            line = 2
        carry = b""
        while True:
            block = handle.read(chunk_bytes)
            if not block:
                if carry:
                    yield line, carry
                return
            block = carry + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:  # no line end yet: a single line longer than the chunk
                carry = block
                continue
            carry = block[cut:]
            yield line, block[:cut]
            line += block.count(b"\n", 0, cut)


def _parse_block(path: Path, first_line: int, block: bytes, separator: bytes) -> npt.NDArray[np.float64]:
    """Rows of (user, movie, rating, timestamp) as float64 (exact for ids and epoch seconds)."""
    if block.isspace():  # blank lines only (isspace, unlike strip, copies nothing)
        return np.zeros((0, 4))
    text = block.replace(separator, b",") if separator != b"," else block
    try:
        table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        table = np.zeros((0, 0))  # the line scan below names the culprit
    if table.ndim != 2 or table.shape[1] != 4 or not _valid_rows(table).all():
        line, problem = _find_bad_line(block, first_line, separator)
        raise format_error(path, line, problem)
    return table


def _valid_rows(table: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
    ids = table[:, :2]
    rating, timestamp = table[:, 2], table[:, 3]
    ids_ok = ((ids >= 1) & (ids < 2**31) & (ids == np.floor(ids))).all(axis=1)
    rating_ok = (rating >= 0.5) & (rating <= 5.0) & (rating * 2 == np.floor(rating * 2))
    time_ok = (timestamp >= 0) & (timestamp == np.floor(timestamp))
    result: npt.NDArray[np.bool_] = ids_ok & rating_ok & time_ok
    return result


def _find_bad_line(block: bytes, first_line: int, separator: bytes) -> tuple[int, str]:
    """The slow path, only taken on error: re-check the block line by line to name the bad one."""
    shown = separator.decode()
    for offset, raw in enumerate(block.split(b"\n")):
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        line = first_line + offset
        fields = text.split(shown)
        if len(fields) != 4:
            return line, f"expected 4 fields ({_RATING_FIELDS}) separated by {shown!r}, got {text!r}"
        try:
            row = np.asarray([[float(f) for f in fields]])
        except ValueError:
            return line, f"expected numbers ({_RATING_FIELDS}), got {text!r}"
        if not _valid_rows(row).all():
            return (
                line,
                f"expected positive integer ids, a rating from 0.5 to 5 in steps of 0.5 and an epoch "
                f"timestamp, got {text!r}",
            )
    last = first_line + block.count(b"\n")
    return first_line, f"unparseable ratings between lines {first_line} and {last}"


def _line_of_row(block: bytes, first_line: int, row: int) -> int:
    """The file line of the ``row``-th data row of a block (blank lines hold no row)."""
    seen = -1
    for offset, raw in enumerate(block.split(b"\n")):
        if raw.strip():
            seen += 1
            if seen == row:
                return first_line + offset
    return first_line


def _lookup(sorted_ids: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> npt.NDArray[np.int32]:
    """Row of each value in ``sorted_ids``, or -1 where it is absent."""
    wanted = values.astype(np.int64)
    rows = np.searchsorted(sorted_ids, wanted)
    rows[rows == len(sorted_ids)] = 0
    found = sorted_ids[rows] == wanted
    return np.where(found, rows, -1).astype(np.int32)


def dense_codes(raw: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """(sorted distinct ids, each value's index among them) without sorting all N values.

    MovieLens ids are small and dense, so a bincount over the id range is O(N) and needs one small
    table; ``np.unique`` (a full sort plus an 8-byte inverse) is the fallback for sparse, huge ids.
    """
    top = int(raw.max())
    if top <= 4 * len(raw) + 1_000_000:
        present = np.bincount(raw, minlength=top + 1) > 0
        ids = np.flatnonzero(present).astype(np.int64)
        table = (np.cumsum(present) - 1).astype(np.int32)
        return ids, table[raw]
    ids, inverse = np.unique(raw, return_inverse=True)
    return ids.astype(np.int64), inverse.astype(np.int32)
