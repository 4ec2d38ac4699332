"""Online scoring over the exported model: two stages, retrieval by dot product then NeuMF re-ranking.

Either model the pipeline publishes: the ID-based NeuMF (format 1, ``ArtifactScorer``: a known user's
row, else a fold-in of their recent movies) or the sequence model (format 2, ``SequenceScorer``: every
request computes the user from their latest engagements in Redis, so what they watched a moment ago
changes their vector at once, and no per-user row exists).

The published artifact is fetched from S3 at init (``recommend/wiring.py`` asks the cache for it once,
with a bounded S3 client) and kept for the container's life. Only a publication made after init costs a
request the load, once per container; a failed load means "no model" for that artifact (the chain falls
back to popularity) and is retried after a pause, not per request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np

from movierec import sequence
from movierec.artifact import (
    SEQUENCE_FORMAT_VERSION,
    FloatArray,
    IndexArray,
    ModelArtifact,
    UserVector,
    format_version,
    load,
    nearest,
    top_indexes,
    unit_rows,
)
from movierec.errors import StoreUnavailableError
from movierec.observability import logger
from movierec.publication import Manifest
from movierec.recommend.movie_features import FreshMovieFeatures
from movierec.stores.blobs import BlobStore

RETRIEVAL_CANDIDATES = 200
RELOAD_PAUSE_SECONDS = 30.0


def best_scored(
    movie_ids: IndexArray, candidates: IndexArray, scores: FloatArray, n: int
) -> list[tuple[int, float]]:
    """The ``n`` best-scored candidates as (movie id, score), best first (ties: retrieval order)."""
    order = np.argsort(-scores, kind="stable")[:n]
    return [(int(m), float(s)) for m, s in zip(movie_ids[candidates[order]], scores[order], strict=True)]


class ArtifactScorer:
    """Retrieval over the artifact's vectors, then NeuMF re-ranking of the candidates with their fresh
    online features when ``movie_features`` is given (``recommend/movie_features.py``)."""

    def __init__(
        self,
        artifact: ModelArtifact,
        retrieval_candidates: int = RETRIEVAL_CANDIDATES,
        movie_features: FreshMovieFeatures | None = None,
    ) -> None:
        self.artifact = artifact
        self.model_version = artifact.metadata.model_version
        self._retrieval = retrieval_candidates
        self._movie_features = movie_features

    def rank(
        self,
        user_id: str,
        recent: list[int],
        exclude: frozenset[int],
        n: int,
        recent_times: Sequence[float] = (),
        profile: Mapping[str, str] | None = None,
    ) -> list[tuple[int, float]]:
        del recent_times, profile  # the ID model's user is a row, or the mean of their recent movies
        user: int | UserVector | None = self.artifact.user_index(user_id)
        if user is None:
            user = self.artifact.fold_in(recent)  # unknown to the model: start from what they just watched
        if user is None:
            return []
        excluded = self.artifact.movie_indexes(exclude)
        candidates = self.artifact.retrieve(user, self._retrieval, excluded)
        if len(candidates) == 0:
            return []
        features = (
            self._movie_features.normalised(self.artifact, candidates) if self._movie_features else None
        )
        return best_scored(
            self.artifact.movie_ids, candidates, self.artifact.score(user, candidates, features), n
        )

    def similar(self, movie_id: int, n: int) -> list[tuple[int, float]] | None:
        if self.artifact.movie_index(movie_id) is None:
            return None
        movie_ids, similarity = self.artifact.similar(movie_id, n)
        return [(int(m), float(s)) for m, s in zip(movie_ids, similarity, strict=True)]


class SequenceScorer:
    """The sequence model online: the user vector from their latest engagements (oldest first, with
    their times) and sign-up profile, retrieval over the catalogue by the GMF dot product, then the
    NeuMF head over the candidates."""

    def __init__(
        self,
        model: sequence.SequenceModel,
        retrieval_candidates: int = RETRIEVAL_CANDIDATES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.model = model
        self.model_version = model.metadata.model_version
        self._retrieval = retrieval_candidates
        self._clock = clock
        self._unit = unit_rows(model.item_gmf)

    def user_vector(
        self, recent: list[int], recent_times: Sequence[float], profile: Mapping[str, str] | None
    ) -> sequence.SequenceUserVector | None:
        """``recent`` newest first, as Redis keeps it; a missing time counts as now."""
        now = self._clock()
        times = list(recent_times) if len(recent_times) == len(recent) else [now] * len(recent)
        history = list(reversed(recent))
        stamps = [int(t) for t in reversed(times)]
        return self.model.user_vector(history, None, stamps, profile, int(now))

    def rank(
        self,
        user_id: str,
        recent: list[int],
        exclude: frozenset[int],
        n: int,
        recent_times: Sequence[float] = (),
        profile: Mapping[str, str] | None = None,
    ) -> list[tuple[int, float]]:
        del user_id  # the model has no per-user state: the history is the user
        vector = self.user_vector(recent, recent_times, profile)
        if vector is None:
            return []
        scores = self.model.retrieval_scores(vector).astype(np.float32, copy=True)
        excluded = self.model.movie_indexes(list(exclude))
        if len(excluded):
            scores[excluded] = -np.inf
        candidates = top_indexes(scores, self._retrieval)
        if len(candidates) == 0:
            return []
        return best_scored(self.model.movie_ids, candidates, self.model.score(vector, candidates), n)

    def similar(self, movie_id: int, n: int) -> list[tuple[int, float]] | None:
        index = self.model.movie_index(movie_id)
        if index is None:
            return None
        rows, similarity = nearest(self._unit, index, n)
        return [(int(m), float(s)) for m, s in zip(self.model.movie_ids[rows], similarity, strict=True)]


OnlineModel = ArtifactScorer | SequenceScorer


def load_scorer(body: bytes, movie_features: FreshMovieFeatures | None = None) -> OnlineModel:
    """The scorer of an artifact of either format (``movierec.artifact.format_version``)."""
    if format_version(body) == SEQUENCE_FORMAT_VERSION:
        return SequenceScorer(sequence.load(body))
    return ArtifactScorer(load(body), movie_features=movie_features)


class ScorerCache:
    """``scorer(manifest)`` for the recommender: the model a publication names, loaded once."""

    def __init__(
        self,
        blobs: BlobStore,
        clock: Callable[[], float] = time.monotonic,
        movie_features: FreshMovieFeatures | None = None,
    ) -> None:
        self._blobs = blobs
        self._clock = clock
        self._movie_features = movie_features
        self._loaded: tuple[str, OnlineModel] | None = None  # (artifact uri, scorer)
        self._failed: dict[str, float] = {}  # artifact uri -> when loading last failed

    def __call__(self, manifest: Manifest | None) -> OnlineModel | None:
        uri = manifest.artifact_uri if manifest else None
        if uri is None:
            return None
        if self._loaded and self._loaded[0] == uri:
            return self._loaded[1]
        failed_at = self._failed.get(uri)
        if failed_at is not None and self._clock() - failed_at < RELOAD_PAUSE_SECONDS:
            return None
        try:
            scorer = load_scorer(self._fetch(uri), self._movie_features)
        except (StoreUnavailableError, ValueError, KeyError, OSError) as error:
            self._failed[uri] = self._clock()
            logger.warning("model artifact unavailable", extra={"uri": uri, "error": str(error)})
            return None
        self._loaded = (uri, scorer)
        logger.info("model artifact loaded", extra={"uri": uri, "model_version": scorer.model_version})
        return scorer

    @property
    def loaded_uri(self) -> str | None:
        return self._loaded[0] if self._loaded else None

    def _fetch(self, uri: str) -> bytes:
        parsed = urlparse(uri)
        if parsed.scheme != "s3" or parsed.netloc != self._blobs.bucket:
            raise ValueError(f"artifact {uri} is not in the artifact bucket s3://{self._blobs.bucket}")
        body = self._blobs.get(parsed.path.lstrip("/"))
        if body is None:
            raise ValueError(f"artifact {uri} does not exist")
        return body
