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
    """One artifact's movie-feature columns: names, normalisation, which view fills each."""

    names: tuple[str, ...]
    mean: FloatArray
    std: FloatArray
    from_metadata: npt.NDArray[np.bool_]
    unknown_year: float

    @classmethod
    def of(cls, artifact: ModelArtifact) -> _Columns:
        norm = artifact.metadata.movie_features
        cold = dict(zip(norm.names, artifact.metadata.cold_movie_features, strict=True))
        return cls(
            names=tuple(norm.names),
            mean=np.asarray(norm.mean, dtype=np.float32),
            std=np.asarray(norm.std, dtype=np.float32),
            from_metadata=np.asarray([from_movie_metadata(n) for n in norm.names], dtype=np.bool_),
            unknown_year=float(cold.get("year", 0.0)),
        )


@dataclass(frozen=True)
class _Row:
    """A movie's online features in the artifact's columns, and which columns the store filled."""

    expires_at: float
    raw: FloatArray  # (features,)
    online: npt.NDArray[np.bool_]  # (features,): False keeps the training-time value


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
        rows = [self._rows.get(m) for m in movie_ids]
        if not any(row is not None and row.online.any() for row in rows):
            return current
        width = len(columns.names)
        absent = _Row(0.0, np.zeros(width, np.float32), np.zeros(width, np.bool_))
        raw = np.stack([(row or absent).raw for row in rows])
        online = np.stack([(row or absent).online for row in rows])
        fresh = (raw - columns.mean) / columns.std
        return np.where(online, fresh, current).astype(np.float32)

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
            if read is None:
                nothing = np.zeros(len(names), np.float32)
                self._rows[movie_id] = _Row(expires_at, nothing, np.zeros(len(names), np.bool_))
                continue
            stats = read[MOVIE_STATS_V1.name][i]
            raw = movie_model_features(names, stats.values, {}, columns.unknown_year)
            online = ~columns.from_metadata & stats.found
            self._rows[movie_id] = _Row(expires_at, np.asarray(raw, dtype=np.float32), online)
