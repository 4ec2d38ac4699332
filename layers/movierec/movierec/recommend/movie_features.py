"""Fresh movie features for the online tier: the candidates' current rows in the feature store.

The model scores a movie from its ID embedding plus a projection of its features (popularity, recency,
mean rating, genres, year). The artifact froze those features at its training cut-off; the feature
pipeline materializes newer ones into the online store (Feast's Redis layout) at every run and
backfill. Re-ranking reads ``movie_stats_v1`` (popularity, recency, mean rating: what changes) for the
~200 retrieved candidates and swaps it into the movie vectors (``ModelArtifact.item_vectors``), so a
movie that is trending now ranks as trending before the next model is trained. A candidate's genres
and year (``movie_metadata_v1``) do not change after training, so they are not read: half the reads
(bench/serve_features.py). Retrieval keeps the artifact's vectors (a dot product over the whole
catalogue needs them precomputed).

Rows are cached in-process for ``cache_seconds`` (materialization runs hours apart; a catalogue of
~10^4 movies is a few MB), so most requests read no feature at all. What the store lacks keeps its
training-time value, view by view: a movie without a ``movie_stats_v1`` row, a Redis error (then no
read for ``FAIL_FAST_SECONDS``, as ``ServingStore``), a value that does not decode (logged). Serving
never fails on features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from movierec.artifact import FloatArray, ModelArtifact
from movierec.feature_views import MOVIE_STATS_V1, from_movie_metadata, movie_model_features
from movierec.observability import logger
from movierec.stores.cache import REDIS_ERRORS
from movierec.stores.online_features import FeatureDecodeError, OnlineFeatureReader

FAIL_FAST_SECONDS = 1.0
MOVIE_FEATURE_VIEWS = (MOVIE_STATS_V1,)


@dataclass(frozen=True)
class _Columns:
    """One artifact's movie-feature columns: names, normalisation, which come from ``movie_stats_v1``."""

    names: tuple[str, ...]
    mean: FloatArray
    std: FloatArray
    stats: npt.NDArray[np.bool_]  # the others (genres, year) keep the artifact's values

    @classmethod
    def of(cls, artifact: ModelArtifact) -> _Columns:
        norm = artifact.metadata.movie_features
        return cls(
            names=tuple(norm.names),
            mean=np.asarray(norm.mean, dtype=np.float32),
            std=np.asarray(norm.std, dtype=np.float32),
            stats=np.asarray([not from_movie_metadata(n) for n in norm.names], dtype=np.bool_),
        )


@dataclass(frozen=True)
class _Row:
    """A movie's online features in the artifact's columns; None when the store had no usable row."""

    expires_at: float
    raw: FloatArray | None


class FreshMovieFeatures:
    """``normalised(artifact, movie_indexes)``: the candidates' features as the model reads them."""

    def __init__(
        self,
        reader: OnlineFeatureReader,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._columns: _Columns | None = None
        self._rows: dict[int, _Row] = {}
        self._failing_until = 0.0

    def normalised(
        self, artifact: ModelArtifact, movie_indexes: npt.NDArray[np.integer]
    ) -> FloatArray | None:
        """(candidates, features), normalised; None when the artifact cannot take fresh features."""
        if artifact.item_features is None:
            return None
        columns = self._columns_for(artifact)
        movies = np.asarray(movie_indexes, dtype=np.int64)
        movie_ids = [int(m) for m in artifact.movie_ids[movies]]
        now = self._clock()
        missing = [m for m in movie_ids if (row := self._rows.get(m)) is None or row.expires_at <= now]
        if missing and now >= self._failing_until:
            self._fetch(missing, columns, now)
        current = artifact.item_features[movies].copy()
        found = [
            (i, row.raw)
            for i, m in enumerate(movie_ids)
            if (row := self._rows.get(m)) and row.raw is not None
        ]
        if not found:
            return current
        rows = np.asarray([i for i, _ in found], dtype=np.int64)
        fresh = (np.stack([raw for _, raw in found]) - columns.mean) / columns.std
        current[np.ix_(rows, columns.stats)] = fresh[:, columns.stats]
        return current

    def _columns_for(self, artifact: ModelArtifact) -> _Columns:
        names = tuple(artifact.metadata.movie_features.names)
        if self._columns is None or self._columns.names != names:
            self._columns = _Columns.of(artifact)
            self._rows.clear()  # rows are laid out in the previous artifact's columns
        return self._columns

    def _fetch(self, movie_ids: Sequence[int], columns: _Columns, now: float) -> None:
        try:
            read = self._reader.read(MOVIE_FEATURE_VIEWS, movie_ids)
        except REDIS_ERRORS as error:
            self._failing_until = now + FAIL_FAST_SECONDS
            logger.warning("online movie features unavailable", extra={"error": str(error)})
            return
        except FeatureDecodeError as error:  # a bad value: those movies keep training-time features
            logger.error("online movie features undecodable", extra={"error": str(error)})
            read = None
        names = list(columns.names)
        expires_at = now + self._cache_seconds
        for i, movie_id in enumerate(movie_ids):
            stats = read[MOVIE_STATS_V1.name][i] if read is not None else None
            raw = movie_model_features(names, stats.values, {}) if stats is not None and stats.found else None
            self._rows[movie_id] = _Row(expires_at, None if raw is None else np.asarray(raw, np.float32))
