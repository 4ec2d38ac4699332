"""The MovieLens loader, on tiny hand-written files in every release format, and on ml-latest-small; its
errors on bad input are in test_movielens_errors.py."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from movierec.data.dataset import UNKNOWN, InteractionKind
from tests.unit.movielens_files import FLAGS, column, make_1m, make_10m, make_100k, make_csv, movie, write
from training_job.sources.movielens import (
    Release,
    detect_release,
    load_movielens,
    region_from_zip,
    year_from_title,
)

# --- formats ------------------------------------------------------------------------------------------


def test_100k(tmp_path: Path) -> None:
    data = load_movielens(make_100k(tmp_path / "ml-100k"))
    assert detect_release(tmp_path / "ml-100k") is Release.ML_100K
    assert data.name == "ml-100k"
    assert data.users.ids == ["1", "2", "3"]
    assert data.users.region == ["us-mountain", "intl", "us-northeast"]
    assert data.users.gender == ["M", "F", "M"]
    assert data.users.age.tolist() == [24, 53, 23]
    assert data.users.occupation == ["technician", "other", "writer"]
    assert movie(data, 10) == ("Café Society (1995)", ("Comedy", "Drama"), 1995)
    assert movie(data, 20) == ("Sans titre", ("Drama",), 1994)  # year from the release date
    assert movie(data, 267) == ("unknown", (), 0)  # the "unknown" flag is no genre
    assert column(data, "1") == [(10, 4.0, 881250949), (20, 3.0, 881250951)]
    assert len(data.interactions) == 4
    assert (data.interactions.kind == InteractionKind.RATING).all()


def test_100k_reads_genre_names_from_u_genre(tmp_path: Path) -> None:
    folder = make_100k(tmp_path / "ml-100k")
    names = ["unknown", *[f"G{i}" for i in range(1, FLAGS)]]
    write(folder, "u.genre", "".join(f"{name}|{i}\n" for i, name in enumerate(names)))
    assert movie(load_movielens(folder), 10)[1] == ("G5", "G8")


def test_1m(tmp_path: Path) -> None:
    data = load_movielens(make_1m(tmp_path / "ml-1m"))
    assert detect_release(tmp_path / "ml-1m") is Release.ML_1M
    assert data.users.ids == ["1", "2"]
    assert data.users.region == ["us-midwest", "us-south"]
    assert data.users.gender == ["F", "M"]
    assert data.users.age.tolist() == [1, 56]  # ML-1M age bucket codes, kept as they are
    assert data.users.occupation == ["K-12 student", "self-employed"]
    assert movie(data, 661) == ("Misérables, Les (1995)", ("Drama", "Musical"), 1995)
    assert column(data, "2") == [(1193, 3.0, 978298413), (661, 4.0, 978302109)]


def test_10m_has_no_users_file(tmp_path: Path) -> None:
    data = load_movielens(make_10m(tmp_path / "ml-10M100K"))
    assert detect_release(tmp_path / "ml-10M100K") is Release.ML_10M
    assert data.users.ids == ["5", "7"]
    assert data.users.region == [UNKNOWN, UNKNOWN]
    assert data.users.gender == []
    assert len(data.users.age) == 0
    assert movie(data, 185) == ("Net, The (1995)", (), 1995)
    assert column(data, "7") == [(185, 0.5, 838983525)]
    assert column(data, "5") == [(122, 4.5, 838985046), (185, 3.0, 838983421)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv(tmp_path: Path, newline: str) -> None:
    data = load_movielens(make_csv(tmp_path / "ml-latest-small", newline))
    assert detect_release(tmp_path / "ml-latest-small") is Release.CSV
    assert data.users.ids == ["1", "42"]
    assert data.users.region == [UNKNOWN, UNKNOWN]
    assert data.movies.ids.tolist() == [1, 11, 12, 13]
    assert movie(data, 1) == ("American President, The (1995)", ("Comedy", "Drama", "Romance"), 1995)
    assert movie(data, 11) == ("Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", (), 2001)
    assert movie(data, 12) == ('A "Quoted" Title', ("Drama",), 0)
    assert movie(data, 13) == ("Babylon 5 (1994-1998)", ("Sci-Fi",), 1994)
    assert column(data, "1") == [(1, 4.0, 964982703), (11, 2.5, 964981247)]
    assert column(data, "42") == [(1, 5.0, 1445714994)]
    assert data.interactions.user.dtype == np.int32
    assert data.interactions.movie.dtype == np.int32
    assert data.interactions.value.dtype == np.float32
    assert data.interactions.timestamp.dtype == np.int64


def test_latin1_movies_dat_in_a_10m_layout_still_decodes(tmp_path: Path) -> None:
    folder = make_10m(tmp_path / "ml-10m")
    write(folder, "movies.dat", "122::Boîte (1992)::Comedy\n185::Net, The (1995)::Thriller\n", "latin-1")
    assert movie(load_movielens(folder), 122)[0] == "Boîte (1992)"


@pytest.fixture(scope="module")
def fixture_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("releases")
    return {
        "100k": make_100k(root / "100k"),
        "1m": make_1m(root / "1m"),
        "10m": make_10m(root / "10m"),
        "csv": make_csv(root / "csv", "\r\n"),
    }


@settings(
    derandomize=True,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(release=st.sampled_from(["100k", "1m", "10m", "csv"]), chunk_bytes=st.integers(1, 120))
def test_chunk_size_does_not_change_the_result(
    fixture_folders: dict[str, Path], release: str, chunk_bytes: int
) -> None:
    whole = load_movielens(fixture_folders[release])
    chunked = load_movielens(fixture_folders[release], chunk_bytes=chunk_bytes)
    assert chunked.users.ids == whole.users.ids
    assert chunked.users.region == whole.users.region
    assert np.array_equal(chunked.users.age, whole.users.age)
    for name in ("user", "movie", "value", "timestamp", "kind"):
        assert np.array_equal(getattr(chunked.interactions, name), getattr(whole.interactions, name)), name


def test_ratings_load_in_bounded_memory(tmp_path: Path) -> None:
    """Memory is the final columns plus one chunk, not a Python object per rating."""
    rng = np.random.default_rng(3)
    n = 200_000
    folder = tmp_path / "ml-big"
    users = rng.integers(1, 5_000, size=n)
    movies = rng.integers(1, 1_000, size=n)
    ratings = rng.integers(1, 11, size=n) / 2
    lines = "".join(
        f"{u},{m},{r},{1_500_000_000 + i}\n"
        for i, (u, m, r) in enumerate(zip(users.tolist(), movies.tolist(), ratings.tolist(), strict=True))
    )
    write(folder, "ratings.csv", "userId,movieId,rating,timestamp\n" + lines)
    titles = "".join(f"{m},M{m} (2000),Drama\n" for m in range(1, 1_000))
    write(folder, "movies.csv", "movieId,title,genres\n" + titles)
    chunk = 256 * 1024
    tracemalloc.start()
    try:
        data = load_movielens(folder, chunk_bytes=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    final = sum(getattr(data.interactions, c).nbytes for c in ("user", "movie", "value", "timestamp", "kind"))
    assert len(data.interactions) == n
    # The columns, their chunks during the final concatenation, and one chunk's bytes and float64 table
    # (measured: 1.4x the columns). Reading the whole file at once would need ~4x; a Python object per
    # rating, more than 7x.
    assert peak < 2 * final + 8 * chunk, (peak, final)


# --- attributes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zip_code", "region"),
    [
        ("85711", "us-mountain"),
        ("02139", "us-northeast"),
        ("10001", "us-northeast"),
        ("30301", "us-southeast"),
        ("60601", "us-midwest"),
        ("75201", "us-south"),
        ("98107-2117", "us-west"),
        ("981072117", "us-west"),
        ("T8H1N", "intl"),
        ("V3N4P", "intl"),
        ("1234", "intl"),
        ("  ", UNKNOWN),
    ],
)
def test_region_from_zip(zip_code: str, region: str) -> None:
    assert region_from_zip(zip_code) == region


@pytest.mark.parametrize(
    ("title", "year"),
    [
        ("Toy Story (1995)", 1995),
        ("City of Lost Children, The (Cité des enfants perdus, La) (1995)", 1995),
        ("Babylon 5 (1994-1998) ", 1994),
        ("Death Note (2006\u20132007)", 2006),
        ("Stranger Things (2016-)", 2016),
        ("Hyena Road", 0),
        ("2001: A Space Odyssey", 0),
        ("Movie (0001)", 0),
    ],
)
def test_year_from_title(title: str, year: int) -> None:
    assert year_from_title(title) == year


# --- the real thing -----------------------------------------------------------------------------------


@pytest.mark.movielens
def test_ml_latest_small(movielens_small: Path) -> None:
    data = load_movielens(movielens_small)
    assert data.name == "ml-latest-small"
    assert (len(data.users), len(data.movies), len(data.interactions)) == (610, 9742, 100836)
    assert data.users.ids[:3] == ["1", "2", "3"]
    assert set(data.users.region) == {UNKNOWN}
    assert movie(data, 1) == (
        "Toy Story (1995)",
        ("Adventure", "Animation", "Children", "Comedy", "Fantasy"),
        1995,
    )
    assert column(data, "1")[0] == (1, 4.0, 964982703)
    values = data.interactions.value
    assert 3.4 < float(values.mean()) < 3.6
    assert set(np.unique(values).tolist()) <= {x / 2 for x in range(1, 11)}
    assert int(np.count_nonzero(data.movies.year == 0)) < 20
    assert np.bincount(data.interactions.user).min() >= 20  # every ml-latest-small user rated 20+
