"""Tiny hand-written MovieLens releases, one per format, and readers of a loaded dataset, for the
loader's tests (test_movielens.py, test_movielens_errors.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from movierec.data.dataset import Dataset

FLAGS = 19


def flags(*on: int) -> str:
    return "|".join("1" if i in on else "0" for i in range(FLAGS))


def write(folder: Path, name: str, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    target.write_bytes(text.replace("\n", newline).encode(encoding))
    return target


def make_100k(folder: Path) -> Path:
    write(
        folder,
        "u.data",
        "1\t10\t4\t881250949\n2\t20\t5\t881250950\n1\t20\t3\t881250951\n3\t267\t1\t881250952\n",
    )
    write(
        folder,
        "u.user",
        "1|24|M|technician|85711\n2|53|F|other|T8H1N\n3|23|M|writer|02139\n",
    )
    write(
        folder,
        "u.item",
        f"10|Café Society (1995)|01-Jan-1995||http://x/10|{flags(5, 8)}\n"
        f"20|Sans titre|01-Jan-1994||http://x/20|{flags(8)}\n"
        f"267|unknown||||{flags(0)}\n",
        encoding="latin-1",
    )
    return folder


def make_1m(folder: Path) -> Path:
    write(folder, "ratings.dat", "1::1193::5::978300760\n2::1193::3::978298413\n2::661::4::978302109\n")
    write(folder, "users.dat", "1::F::1::10::48067\n2::M::56::16::70072-1234\n")
    write(
        folder,
        "movies.dat",
        "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Misérables, Les (1995)::Drama|Musical\n",
        encoding="latin-1",
    )
    return folder


def make_10m(folder: Path) -> Path:
    write(folder, "ratings.dat", "5::122::4.5::838985046\n7::185::0.5::838983525\n5::185::3::838983421\n")
    write(
        folder,
        "movies.dat",
        "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::(no genres listed)\n",
    )
    return folder


def make_csv(folder: Path, newline: str = "\n") -> Path:
    write(
        folder,
        "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,2.5,964981247\n\n42,1,5.0,1445714994\n",
        newline=newline,
    )
    write(
        folder,
        "movies.csv",
        "movieId,title,genres\n"
        '1,"American President, The (1995)",Comedy|Drama|Romance\n'
        '11,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",(no genres listed)\n'
        '12,"A ""Quoted"" Title",Drama\n'
        "13,Babylon 5 (1994-1998) ,Sci-Fi\n",
        newline=newline,
    )
    return folder


def column(dataset: Dataset, user: str) -> list[tuple[int, float, int]]:
    """(movie id, rating, timestamp) of one user's ratings, in file order."""
    rows = np.flatnonzero(dataset.interactions.user == dataset.users.ids.index(user))
    return [
        (
            int(dataset.movies.ids[dataset.interactions.movie[r]]),
            float(dataset.interactions.value[r]),
            int(dataset.interactions.timestamp[r]),
        )
        for r in rows
    ]


def movie(dataset: Dataset, movie_id: int) -> tuple[str, tuple[str, ...], int]:
    row = int(np.flatnonzero(dataset.movies.ids == movie_id)[0])
    return dataset.movies.titles[row], dataset.movies.genres[row], int(dataset.movies.year[row])
