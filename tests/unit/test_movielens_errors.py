"""The MovieLens loader on bad input: every error names the file, the line and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.movielens_files import flags, make_1m, make_100k, make_csv, write
from training_job.sources.movielens import MovieLensFormatError, load_movielens


def test_missing_path_says_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(MovieLensFormatError, match="does not exist") as raised:
        load_movielens(tmp_path / "nope")
    for name in ("u.data", "ratings.dat", "users.dat", "ratings.csv", "movies.csv"):
        assert name in str(raised.value)


def test_folder_without_known_files_lists_each_release(tmp_path: Path) -> None:
    write(tmp_path, "README.txt", "hello\n")
    with pytest.raises(MovieLensFormatError) as raised:
        load_movielens(tmp_path)
    message = str(raised.value)
    assert "ml-100k: u.data, u.item, u.user" in message
    assert "ml-1m: ratings.dat, movies.dat, users.dat" in message
    assert "ml-10m: ratings.dat, movies.dat" in message
    assert "ratings.csv, movies.csv" in message


def test_a_file_or_zip_is_not_a_folder(tmp_path: Path) -> None:
    archive = write(tmp_path, "ml-latest-small.zip", "PK")
    with pytest.raises(MovieLensFormatError, match="unzip it first"):
        load_movielens(archive)


def test_incomplete_release_names_the_missing_file(tmp_path: Path) -> None:
    folder = make_csv(tmp_path / "ml")
    (folder / "movies.csv").unlink()
    with pytest.raises(MovieLensFormatError, match=r"lacks movies\.csv"):
        load_movielens(folder)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("1,1,4.0", "expected 4 fields"),
        ("1,1,4.0,964982703,7", "expected 4 fields"),
        ("1,x,4.0,964982703", "expected numbers"),
        ("1,1,7.0,964982703", "rating from 0.5 to 5"),
        ("1,1,3.7,964982703", "rating from 0.5 to 5"),
        ("0,1,4.0,964982703", "positive integer ids"),
        ("1,1.5,4.0,964982703", "positive integer ids"),
        ("1,1,4.0,-5", "epoch"),
    ],
)
def test_corrupt_rating_line_names_file_and_line(tmp_path: Path, line: str, problem: str) -> None:
    folder = make_csv(tmp_path / "ml", "\r\n")
    good = "userId,movieId,rating,timestamp\r\n1,1,4.0,964982703\r\n\r\n42,1,5.0,1445714994\r\n"
    write(folder, "ratings.csv", good + line + "\r\n1,11,3.0,964982704\r\n")
    for chunk_bytes in (1 << 20, 16):  # the line number survives chunking
        with pytest.raises(MovieLensFormatError, match=problem) as raised:
            load_movielens(folder, chunk_bytes=chunk_bytes)
        assert "ratings.csv:5: " in str(raised.value)


def test_corrupt_dat_line_names_file_and_line(tmp_path: Path) -> None:
    folder = make_1m(tmp_path / "ml-1m")
    write(folder, "ratings.dat", "1::1193::5::978300760\n1::1193::5\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings\.dat:2: expected 4 fields"):
        load_movielens(folder)


def test_rating_of_unknown_movie_names_the_line(tmp_path: Path) -> None:
    folder = make_csv(tmp_path / "ml")
    write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n\n1,999,4.0,2\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings\.csv:4: movie 999 is not in the movies file"):
        load_movielens(folder)


def test_rating_of_unknown_user_names_the_line(tmp_path: Path) -> None:
    folder = make_1m(tmp_path / "ml-1m")
    write(folder, "ratings.dat", "1::1193::5::978300760\n9::1193::5::978300761\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings\.dat:2: user 9 is not in the users file"):
        load_movielens(folder)


def test_wrong_csv_header(tmp_path: Path) -> None:
    folder = make_csv(tmp_path / "ml")
    write(folder, "ratings.csv", "user,item,rating,ts\n1,1,4.0,1\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings\.csv:1: expected the header userId,movieId"):
        load_movielens(folder)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("movieId,title,genres\n1,Toy Story (1995)\n", r"movies\.csv:2: expected 3 fields"),
        ("movieId,title,genres\n1,A (1995),Drama\nx,B (1996),Drama\n", r"movies\.csv:3: expected a positive"),
        ("movieId,title,genres\n1,A (1995),Drama\n1,B (1996),Drama\n", "lists movie 1 more than once"),
        ("movieId,title,genres\n1,,Drama\n", r"movies\.csv:2: movie 1 has an empty title"),
    ],
)
def test_corrupt_movies_csv(tmp_path: Path, text: str, problem: str) -> None:
    folder = make_csv(tmp_path / "ml")
    write(folder, "movies.csv", text)
    with pytest.raises(MovieLensFormatError, match=problem):
        load_movielens(folder)


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("users.dat", "1::F::1::10::48067\n2::M::56\n", r"users\.dat:2: expected UserID::Gender"),
        ("users.dat", "1::F::1::99::48067\n", r"users\.dat:1: expected an occupation code"),
        ("users.dat", "1::X::1::10::48067\n", r"users\.dat:1: expected gender"),
        ("movies.dat", "1193 One Flew (1975) Drama\n", r"movies\.dat:1: expected MovieID::Title::Genres"),
    ],
)
def test_corrupt_1m_text_files(tmp_path: Path, name: str, text: str, problem: str) -> None:
    folder = make_1m(tmp_path / "ml-1m")
    write(folder, name, text)
    with pytest.raises(MovieLensFormatError, match=problem):
        load_movielens(folder)


def test_corrupt_u_item(tmp_path: Path) -> None:
    folder = make_100k(tmp_path / "ml-100k")
    write(folder, "u.item", f"10|Short|01-Jan-1995||url|{flags(1)}\n11|Too few|x\n")
    with pytest.raises(MovieLensFormatError, match=r"u\.item:2: expected id\|title"):
        load_movielens(folder)


def test_empty_ratings_file(tmp_path: Path) -> None:
    folder = make_csv(tmp_path / "ml")
    write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n\n")
    with pytest.raises(MovieLensFormatError, match="holds no ratings"):
        load_movielens(folder)
