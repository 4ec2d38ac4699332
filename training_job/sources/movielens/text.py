"""The small text files (movies, users), parsed line by line: where the text quirks live (quoted commas,
latin-1, CRLF)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from movierec.data.dataset import Movies, Users
from training_job.sources.movielens.attributes import (
    GENRES_100K,
    OCCUPATIONS_1M,
    region_from_zip,
    split_genres,
    year_from_date,
    year_from_title,
)
from training_job.sources.movielens.release import MovieLensFormatError, format_error


def decode_text(path: Path) -> str:
    """UTF-8 (10M, 20M+) when it decodes, else latin-1 (100K, 1M), which decodes any byte sequence."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each non-blank line; splitlines copes with LF and CRLF alike."""
    for number, line in enumerate(decode_text(path).splitlines(), start=1):
        if line.strip():
            yield number, line


def parse_id(path: Path, line: int, text: str, what: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise format_error(path, line, f"expected a positive integer {what}, got {text!r}") from None
    if value < 1:
        raise format_error(path, line, f"expected a positive integer {what}, got {text!r}")
    return value


@dataclass
class MovieRows:
    ids: list[int]
    titles: list[str]
    genres: list[tuple[str, ...]]
    years: list[int]

    def add(
        self, path: Path, line: int, movie_id: int, title: str, genres: tuple[str, ...], year: int
    ) -> None:
        if not title:
            raise format_error(path, line, f"movie {movie_id} has an empty title")
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


def read_movies_csv(path: Path) -> Movies:
    movies = MovieRows([], [], [], [])
    # newline="" lets the csv module see CRLF and quoted fields ("American President, The (1995)").
    reader = csv.reader(io.StringIO(decode_text(path), newline=""))
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
        raise format_error(path, 1, f"expected the header movieId,title,genres, got {header!r}")
    for row in reader:
        line = reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != 3:
            raise format_error(path, line, f"expected 3 fields movieId,title,genres, got {len(row)}: {row!r}")
        movie_id = parse_id(path, line, row[0], "movieId")
        title = row[1].strip()
        movies.add(path, line, movie_id, title, split_genres(row[2]), year_from_title(title))
    return movies.to_movies(path)


def read_movies_dat(path: Path) -> Movies:
    movies = MovieRows([], [], [], [])
    for line, text in text_lines(path):
        head, sep, rest = text.partition("::")
        title, sep2, genres = rest.rpartition("::")  # rpartition: a title may itself contain "::"
        if not sep or not sep2:
            raise format_error(path, line, f"expected MovieID::Title::Genres, got {text!r}")
        movie_id = parse_id(path, line, head, "MovieID")
        title = title.strip()
        movies.add(path, line, movie_id, title, split_genres(genres), year_from_title(title))
    return movies.to_movies(path)


def genre_names_100k(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        return GENRES_100K
    names: dict[int, str] = {}
    for line, text in text_lines(path):
        name, sep, index = text.rpartition("|")
        if not sep:
            raise format_error(path, line, f"expected name|index, got {text!r}")
        if not index.strip().isdigit():
            raise format_error(path, line, f"expected name|index with a numeric index, got {text!r}")
        names[int(index)] = name.strip()
    if sorted(names) != list(range(len(names))):
        raise MovieLensFormatError(f"{path}: genre indexes are not 0..{len(names) - 1}")
    return tuple(names[i] for i in range(len(names)))


def read_movies_100k(path: Path, genre_names: tuple[str, ...]) -> Movies:
    movies = MovieRows([], [], [], [])
    n_flags = len(genre_names)
    for line, text in text_lines(path):
        fields = text.split("|")
        # id|title|release date|video release date|IMDb URL|flags...; join the middle back in case a
        # title holds a "|".
        if len(fields) < 5 + n_flags:
            raise format_error(
                path,
                line,
                f"expected id|title|release date|video date|url|{n_flags} genre flags, "
                f"got {len(fields)} fields",
            )
        flags = fields[-n_flags:]
        release_date = fields[-n_flags - 3]
        title = "|".join(fields[1 : len(fields) - n_flags - 3]).strip()
        movie_id = parse_id(path, line, fields[0], "movie id")
        if any(flag.strip() not in ("0", "1") for flag in flags):
            raise format_error(path, line, f"expected {n_flags} genre flags of 0 or 1, got {flags!r}")
        genres = tuple(
            name
            for name, flag in zip(genre_names, flags, strict=True)
            if flag.strip() == "1" and name != "unknown"
        )
        year = year_from_title(title) or year_from_date(release_date)
        movies.add(path, line, movie_id, title, genres, year)
    return movies.to_movies(path)


@dataclass(frozen=True)
class User:
    user_id: int
    age: int
    gender: str
    occupation: str
    zip_code: str


@dataclass
class UserTable:
    ids: npt.NDArray[np.int64]  # sorted
    rows: list[User]

    def to_users(self) -> Users:
        return Users(
            ids=[str(u.user_id) for u in self.rows],
            region=[region_from_zip(u.zip_code) for u in self.rows],
            gender=[u.gender for u in self.rows],
            age=np.asarray([u.age for u in self.rows], dtype=np.int16),
            occupation=[u.occupation for u in self.rows],
        )


def user_100k(path: Path, line: int, fields: list[str]) -> User:
    # id|age|gender|occupation|zip
    if len(fields) != 5:
        raise format_error(
            path, line, f"expected user id|age|gender|occupation|zip code, got {len(fields)} fields"
        )
    return User(
        user_id=parse_id(path, line, fields[0], "user id"),
        age=_parse_age(path, line, fields[1]),
        gender=_parse_gender(path, line, fields[2]),
        occupation=fields[3].strip(),
        zip_code=fields[4],
    )


def user_1m(path: Path, line: int, fields: list[str]) -> User:
    # UserID::Gender::Age::Occupation::Zip-code, where Age is a bucket code and Occupation a code.
    if len(fields) != 5:
        raise format_error(
            path, line, f"expected UserID::Gender::Age::Occupation::Zip-code, got {len(fields)} fields"
        )
    code = fields[3].strip()
    if not code.isdigit() or int(code) >= len(OCCUPATIONS_1M):
        raise format_error(
            path, line, f"expected an occupation code 0-{len(OCCUPATIONS_1M) - 1}, got {code!r}"
        )
    return User(
        user_id=parse_id(path, line, fields[0], "UserID"),
        age=_parse_age(path, line, fields[2]),
        gender=_parse_gender(path, line, fields[1]),
        occupation=OCCUPATIONS_1M[int(code)],
        zip_code=fields[4],
    )


def _parse_age(path: Path, line: int, text: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) > 150:
        raise format_error(path, line, f"expected an age in years, got {text!r}")
    return int(text)


def _parse_gender(path: Path, line: int, text: str) -> str:
    gender = text.strip().upper()
    if gender not in ("M", "F", ""):
        raise format_error(path, line, f"expected gender M or F, got {text!r}")
    return gender


def read_users(path: Path, separator: str, parse: Callable[[Path, int, list[str]], User]) -> UserTable:
    rows = [parse(path, line, text.split(separator)) for line, text in text_lines(path)]
    if not rows:
        raise MovieLensFormatError(f"{path} lists no users")
    rows.sort(key=lambda u: u.user_id)
    ids = np.asarray([u.user_id for u in rows], dtype=np.int64)
    duplicated = ids[1:][ids[1:] == ids[:-1]]
    if len(duplicated):
        raise MovieLensFormatError(f"{path} lists user {int(duplicated[0])} more than once")
    return UserTable(ids=ids, rows=rows)
