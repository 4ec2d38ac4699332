"""Which MovieLens release a folder holds, from the files in it, and the error every bad input raises."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


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


def format_error(path: Path, line: int, problem: str) -> MovieLensFormatError:
    """The error for a bad line: ``path:line: problem``."""
    return MovieLensFormatError(f"{path}:{line}: {problem}")
