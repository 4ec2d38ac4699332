"""Load any MovieLens release into the in-memory :class:`~movierec.data.dataset.Dataset`.

The release is detected from the files in the folder:

========================  =============================================  ===============================
release                   files                                          notes
========================  =============================================  ===============================
100K                      ``u.data``, ``u.item``, ``u.user``             tab / ``|``, latin-1, zip codes
1M                        ``ratings.dat``, ``movies.dat``, ``users.dat``  ``::``, latin-1, zip codes
10M                       ``ratings.dat``, ``movies.dat``                ``::``, UTF-8, no users file
20M, 25M, latest(-small)  ``ratings.csv``, ``movies.csv``                CSV, UTF-8, no users file
========================  =============================================  ===============================

Ratings are parsed in fixed-size byte chunks by numpy's C parser, so 25M ratings never become 25M
Python objects: memory is the final columns (21 bytes a rating) plus one chunk. Movies and users are
small and parsed line by line, which is where the text quirks live (quoted commas, latin-1, CRLF).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import numpy.typing as npt

from movierec.data.dataset import UNKNOWN, Dataset, InteractionKind, Interactions, Movies, Users

CHUNK_BYTES = 32 * 1024 * 1024
"""Ratings are read this many bytes at a time (about 1.2M CSV rows): the loader's working set."""

NO_GENRES = "(no genres listed)"

INTERNATIONAL = "intl"
"""The region of a user whose postal code is not a US ZIP code."""

# The first digit of a US ZIP code is its national area (USPS); neighbouring areas are merged into
# regions big enough for regional popularity to have data behind it.
ZIP_REGIONS: dict[str, str] = {
    "0": "us-northeast",  # New England, NJ, PR
    "1": "us-northeast",  # NY, PA, DE
    "2": "us-southeast",  # DC, MD, VA, WV, NC, SC
    "3": "us-southeast",  # AL, FL, GA, MS, TN
    "4": "us-midwest",  # IN, KY, MI, OH
    "5": "us-midwest",  # IA, MN, MT, ND, SD, WI
    "6": "us-midwest",  # IL, KS, MO, NE
    "7": "us-south",  # AR, LA, OK, TX
    "8": "us-mountain",  # AZ, CO, ID, NM, NV, UT, WY
    "9": "us-west",  # AK, CA, HI, OR, WA
}
_US_ZIP = re.compile(r"^(\d)\d{4}(?:-?\d{4})?$")

# "Toy Story (1995)", "Babylon 5 (1994-1998)", a series with an en dash, stray trailing spaces.
_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[-\u2013]\s*(?:\d{4})?)?\)\s*$")
_MIN_YEAR, _MAX_YEAR = 1800, 2100

# ML-100K's u.genre, in flag order (used when u.genre itself is absent).
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)

# ML-1M's users.dat stores occupations as codes (see its README).
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)


class Release(StrEnum):
    ML_100K = "100k"
    ML_1M = "1m"
    ML_10M = "10m"
    CSV = "csv"  # 20M, 25M, latest, latest-small


RELEASE_FILES: dict[Release, tuple[str, ...]] = {
    Release.ML_100K: ("u.data", "u.item", "u.user"),
    Release.ML_1M: ("ratings.dat", "movies.dat", "users.dat"),
    Release.ML_10M: ("ratings.dat", "movies.dat"),
    Release.CSV: ("ratings.csv", "movies.csv"),
}
_RELEASE_LABELS = {
    Release.ML_100K: "ml-100k",
    Release.ML_1M: "ml-1m",
    Release.ML_10M: "ml-10m",
    Release.CSV: "ml-20m / ml-25m / ml-latest / ml-latest-small",
}


class MovieLensFormatError(ValueError):
    """The folder is not a MovieLens release, or one of its files is malformed (the message says where)."""


def expected_files() -> str:
    """One line per release naming the files it needs: the core of every 'not a release' message."""
    return "; ".join(f"{_RELEASE_LABELS[r]}: {', '.join(RELEASE_FILES[r])}" for r in Release)


def detect_release(path: Path) -> Release:
    if not path.exists():
        raise MovieLensFormatError(f"{path} does not exist; expected a MovieLens folder ({expected_files()})")
    if not path.is_dir():
        hint = " (unzip it first)" if path.suffix == ".zip" else ""
        raise MovieLensFormatError(
            f"{path} is a file{hint}; expected a MovieLens folder ({expected_files()})"
        )
    if (path / "u.data").is_file():
        release = Release.ML_100K
    elif (path / "ratings.dat").is_file():
        release = Release.ML_1M if (path / "users.dat").is_file() else Release.ML_10M
    elif (path / "ratings.csv").is_file():
        release = Release.CSV
    else:
        raise MovieLensFormatError(
            f"{path} holds no MovieLens ratings file; expected one of these sets: {expected_files()}"
        )
    missing = [name for name in RELEASE_FILES[release] if not (path / name).is_file()]
    if missing:
        raise MovieLensFormatError(
            f"{path} looks like {_RELEASE_LABELS[release]} but lacks {', '.join(missing)} "
            f"(that release needs {', '.join(RELEASE_FILES[release])})"
        )
    return release


def load_movielens(path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> Dataset:
    """Load the MovieLens release in ``path``; raises :class:`MovieLensFormatError` on bad input.

    User ids become strings ("42"), movie ids stay integers; every interaction is a RATING. Interactions
    keep the file's order. The dataset is named after the folder (``ml-latest-small``).
    """
    if chunk_bytes < 1:
        raise ValueError("chunk_bytes must be positive")
    path = Path(path)
    release = detect_release(path)
    if release is Release.ML_100K:
        movies = _read_movies_100k(path / "u.item", _genre_names_100k(path / "u.genre"))
        users: _UserTable | None = _read_users(path / "u.user", "|", _user_100k)
        ratings = path / "u.data"
        separator, header = b"\t", None
    elif release is Release.ML_1M or release is Release.ML_10M:
        movies = _read_movies_dat(path / "movies.dat")
        users = _read_users(path / "users.dat", "::", _user_1m) if release is Release.ML_1M else None
        ratings = path / "ratings.dat"
        separator, header = b"::", None
    else:
        movies = _read_movies_csv(path / "movies.csv")
        users = None
        ratings = path / "ratings.csv"
        separator, header = b",", ("userId", "movieId", "rating", "timestamp")

    user_raw, movie_row, value, timestamp = _read_ratings(
        ratings, separator, header, movies.ids, users.ids if users else None, chunk_bytes
    )
    if users is None:
        user_ids, user_index = _dense_codes(user_raw)
        user_table = Users(ids=[str(u) for u in user_ids.tolist()], region=[UNKNOWN] * len(user_ids))
    else:
        user_index = user_raw  # already mapped to rows of the users file
        user_table = users.to_users()
    del user_raw
    interactions = Interactions(
        user=user_index,
        movie=movie_row,
        value=value,
        timestamp=timestamp,
        kind=np.full(len(value), InteractionKind.RATING, dtype=np.int8),
    )
    return Dataset(name=path.resolve().name, users=user_table, movies=movies, interactions=interactions)


# --- attributes ---------------------------------------------------------------------------------------


def region_from_zip(zip_code: str) -> str:
    """A named US region from a ZIP code, ``intl`` for any other postal code, UNKNOWN when empty."""
    code = zip_code.strip()
    if not code:
        return UNKNOWN
    match = _US_ZIP.match(code)
    return ZIP_REGIONS[match.group(1)] if match else INTERNATIONAL


def year_from_title(title: str) -> int:
    """The release year in a MovieLens title ("Heat (1995)" -> 1995); 0 when it has none."""
    match = _TITLE_YEAR.search(title)
    if not match:
        return 0
    year = int(match.group(1))
    return year if _MIN_YEAR <= year <= _MAX_YEAR else 0


def split_genres(field: str) -> tuple[str, ...]:
    if field.strip() == NO_GENRES:
        return ()
    return tuple(g.strip() for g in field.split("|") if g.strip())


# --- text files (movies, users): small, parsed line by line ----------------------------------------


def _decode(path: Path) -> str:
    """UTF-8 (10M, 20M+) when it decodes, else latin-1 (100K, 1M), which decodes any byte sequence."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line; splitlines copes with LF and CRLF alike."""
    for number, line in enumerate(_decode(path).splitlines(), start=1):
        if line.strip():
            yield number, line


def _bad(path: Path, line: int, problem: str) -> MovieLensFormatError:
    return MovieLensFormatError(f"{path}:{line}: {problem}")


def _parse_id(path: Path, line: int, text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise _bad(path, line, f"expected a positive integer {what}, got {text!r}") from None
    if value < 1:
        raise _bad(path, line, f"expected a positive integer {what}, got {text!r}")
    return value


@dataclass
class _MovieRows:
    ids: list[int]
    titles: list[str]
    genres: list[tuple[str, ...]]
    years: list[int]

    def add(
        self, path: Path, line: int, movie_id: int, title: str, genres: tuple[str, ...], year: int
    ) -> None:
        if not title:
            raise _bad(path, line, f"movie {movie_id} has an empty title")
        self.ids.append(movie_id)
        self.titles.append(title)
        self.genres.append(genres)
        self.years.append(year)

    def to_movies(self, path: Path) -> Movies:
        ids = np.asarray(self.ids, dtype=np.int64)
        if len(ids) == 0:
            raise MovieLensFormatError(f"{path} lists no movies")
        order = np.argsort(ids, kind="stable")  # sorted ids let ratings be mapped with searchsorted
        ids = ids[order]
        duplicated = ids[1:][ids[1:] == ids[:-1]]
        if len(duplicated):
            raise MovieLensFormatError(f"{path} lists movie {int(duplicated[0])} more than once")
        rows = order.tolist()
        return Movies(
            ids=ids,
            titles=[self.titles[i] for i in rows],
            genres=[self.genres[i] for i in rows],
            year=np.asarray(self.years, dtype=np.int16)[order],
        )


def _read_movies_csv(path: Path) -> Movies:
    movies = _MovieRows([], [], [], [])
    # newline="" lets the csv module see CRLF and quoted fields ("American President, The (1995)").
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
        raise _bad(path, 1, f"expected the header movieId,title,genres, got {header!r}")
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != 3:
            raise _bad(path, line, f"expected 3 fields movieId,title,genres, got {len(row)}: {row!r}")
        movie_id = _parse_id(path, line, row[0], "movieId")
        title = row[1].strip()
        movies.add(path, line, movie_id, title, split_genres(row[2]), year_from_title(title))
    return movies.to_movies(path)


def _read_movies_dat(path: Path) -> Movies:
    movies = _MovieRows([], [], [], [])
    for line, text in _lines(path):
        head, sep, rest = text.partition("::")
        title, sep2, genres = rest.rpartition("::")  # rpartition: a title may itself contain "::"
        if not sep or not sep2:
            raise _bad(path, line, f"expected MovieID::Title::Genres, got {text!r}")
        movie_id = _parse_id(path, line, head, "MovieID")
        title = title.strip()
        movies.add(path, line, movie_id, title, split_genres(genres), year_from_title(title))
    return movies.to_movies(path)


def _genre_names_100k(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return GENRES_100K
    names: dict[int, str] = {}
    for line, text in _lines(path):
        name, sep, index = text.rpartition("|")
        if not sep:
            raise _bad(path, line, f"expected name|index, got {text!r}")
        if not index.strip().isdigit():
            raise _bad(path, line, f"expected name|index with a numeric index, got {text!r}")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise MovieLensFormatError(f"{path}: genre indexes are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def _read_movies_100k(path: Path, genre_names: tuple[str, ...]) -> Movies:
    movies = _MovieRows([], [], [], [])
    n_flags = len(genre_names)
    for line, text in _lines(path):
        fields = text.split("|")
        # id|title|release date|video release date|IMDb URL|flags...; join the middle back in case a
        # title holds a "|".
        if len(fields) < 5 + n_flags:
            raise _bad(
                path,
                line,
                f"expected id|title|release date|video date|url|{n_flags} genre flags, "
                f"got {len(fields)} fields",
            )
        flags = fields[-n_flags:]
        release_date = fields[-n_flags - 3]
        title = "|".join(fields[1 : len(fields) - n_flags - 3]).strip()
        movie_id = _parse_id(path, line, fields[0], "movie id")
        if any(flag.strip() not in ("0", "1") for flag in flags):
            raise _bad(path, line, f"expected {n_flags} genre flags of 0 or 1, got {flags!r}")
        genres = tuple(
            name
            for name, flag in zip(genre_names, flags, strict=True)
            if flag.strip() == "1" and name != "unknown"
        )
        year = year_from_title(title) or _year_from_date(release_date)
        movies.add(path, line, movie_id, title, genres, year)
    return movies.to_movies(path)


def _year_from_date(text: str) -> int:
    """u.item's release date is "01-Jan-1995"; used when the title carries no year."""
    tail = text.strip()[-4:]
    year = int(tail) if tail.isdigit() else 0
    return year if _MIN_YEAR <= year <= _MAX_YEAR else 0


@dataclass(frozen=True)
class _User:
    user_id: int
    age: int
    gender: str
    occupation: str
    zip_code: str


@dataclass
class _UserTable:
    ids: npt.NDArray[np.int64]  # sorted
    rows: list[_User]

    def to_users(self) -> Users:
        return Users(
            ids=[str(u.user_id) for u in self.rows],
            region=[region_from_zip(u.zip_code) for u in self.rows],
            gender=[u.gender for u in self.rows],
            age=np.asarray([u.age for u in self.rows], dtype=np.int16),
            occupation=[u.occupation for u in self.rows],
        )


def _user_100k(path: Path, line: int, fields: list[str]) -> _User:
    # id|age|gender|occupation|zip
    if len(fields) != 5:
        raise _bad(path, line, f"expected user id|age|gender|occupation|zip code, got {len(fields)} fields")
    return _User(
        user_id=_parse_id(path, line, fields[0], "user id"),
        age=_parse_age(path, line, fields[1]),
        gender=_parse_gender(path, line, fields[2]),
        occupation=fields[3].strip(),
        zip_code=fields[4],
    )


def _user_1m(path: Path, line: int, fields: list[str]) -> _User:
    # UserID::Gender::Age::Occupation::Zip-code, where Age is a bucket code and Occupation a code.
    if len(fields) != 5:
        raise _bad(
            path, line, f"expected UserID::Gender::Age::Occupation::Zip-code, got {len(fields)} fields"
        )
    code = fields[3].strip()
    if not code.isdigit() or int(code) >= len(OCCUPATIONS_1M):
        raise _bad(path, line, f"expected an occupation code 0-{len(OCCUPATIONS_1M) - 1}, got {code!r}")
    return _User(
        user_id=_parse_id(path, line, fields[0], "UserID"),
        age=_parse_age(path, line, fields[2]),
        gender=_parse_gender(path, line, fields[1]),
        occupation=OCCUPATIONS_1M[int(code)],
        zip_code=fields[4],
    )


def _parse_age(path: Path, line: int, text: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) > 150:
        raise _bad(path, line, f"expected an age in years, got {text!r}")
    return int(text)


def _parse_gender(path: Path, line: int, text: str) -> str:
    gender = text.strip().upper()
    if gender not in ("M", "F", ""):
        raise _bad(path, line, f"expected gender M or F, got {text!r}")
    return gender


def _read_users(path: Path, separator: str, parse: Callable[[Path, int, list[str]], _User]) -> _UserTable:
    rows = [parse(path, line, text.split(separator)) for line, text in _lines(path)]
    if not rows:
        raise MovieLensFormatError(f"{path} lists no users")
    rows.sort(key=lambda u: u.user_id)
    ids = np.asarray([u.user_id for u in rows], dtype=np.int64)
    duplicated = ids[1:][ids[1:] == ids[:-1]]
    if len(duplicated):
        raise MovieLensFormatError(f"{path} lists user {int(duplicated[0])} more than once")
    return _UserTable(ids=ids, rows=rows)


# --- ratings: large, parsed in chunks by numpy -------------------------------------------------------

_RATING_FIELDS = "user, movie, rating, timestamp"


def _read_ratings(
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
            raise _bad(path, line, f"movie {int(movie_col[row])} is not in the movies file")
        if user_ids is not None:
            user_rows = _lookup(user_ids, user_col)
            if (user_rows < 0).any():
                row = int(np.flatnonzero(user_rows < 0)[0])
                line = _line_of_row(block, first_line, row)
                raise _bad(path, line, f"user {int(user_col[row])} is not in the users file")
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
                raise _bad(path, 1, f"expected the header {','.join(header)}, got {first!r}")
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
        raise _bad(path, line, problem)
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


def _dense_codes(raw: npt.NDArray[np.int32]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
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


__all__ = [
    "CHUNK_BYTES",
    "INTERNATIONAL",
    "RELEASE_FILES",
    "ZIP_REGIONS",
    "MovieLensFormatError",
    "Release",
    "detect_release",
    "expected_files",
    "load_movielens",
    "region_from_zip",
    "split_genres",
    "year_from_title",
]
