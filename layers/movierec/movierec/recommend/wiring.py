"""Builds the recommender from settings: the composition root, run once per container, at init.

Init also loads what a request must never wait for, each bounded and none fatal:

- the popularity snapshot, from S3 (``SNAPSHOT_KEY``, written at every publication), else the copy the
  build bundled into the function's package (``POPULARITY_SNAPSHOT_PATH``), so a cold container with
  Redis down answers from its first request;
- the published model artifact, so no request pays its download. Without Redis or S3 it is not loaded
  and online scoring waits for it (the chain serves popularity meanwhile).

Online re-ranking reads the candidates' fresh features from the feature store's online store, the same
Redis (``recommend/movie_features.py``), unless ``ONLINE_MOVIE_FEATURES`` is false.
"""

from __future__ import annotations

from pathlib import Path

from movierec.config import RecommendSettings
from movierec.errors import StoreUnavailableError
from movierec.experiments import Experiments
from movierec.observability import logger
from movierec.recommend.movie_features import FreshMovieFeatures
from movierec.recommend.online import ScorerCache
from movierec.recommend.service import Recommender, ServingPolicy
from movierec.recommend.snapshot import SNAPSHOT_KEY, PopularitySnapshot
from movierec.stores import aws
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.experiments import experiment_flags
from movierec.stores.online_features import OnlineFeatureReader
from movierec.stores.serving import ServingStore


def build_recommender(settings: RecommendSettings, package_dir: Path) -> Recommender:
    """``package_dir`` is the function's code directory (``/var/task`` in Lambda): a relative
    ``POPULARITY_SNAPSHOT_PATH`` names a file there."""
    redis = connect_redis(settings)
    store = ServingStore(redis, reconnect_with=lambda: connect_redis(settings, fresh_secret=True))
    blobs = BlobStore(settings.artifact_bucket, aws.bounded_client("s3"))
    bundled = package_dir / settings.popularity_snapshot_path if settings.popularity_snapshot_path else None
    snapshot, s3_reachable = load_snapshot(blobs, bundled)
    movie_features = (
        FreshMovieFeatures(
            OnlineFeatureReader(redis, settings.feature_project), settings.online_features_cache_seconds
        )
        if settings.online_movie_features
        else None
    )
    scorers = ScorerCache(blobs, movie_features=movie_features)
    if s3_reachable:
        preload_model(store, scorers)
    return Recommender(
        store=store,
        snapshot=snapshot,
        policy=ServingPolicy(
            deadline_ms=settings.deadline_ms,
            online_cache_ttl_seconds=settings.online_cache_ttl_seconds,
            trending_bucket_seconds=settings.trending_bucket_seconds,
        ),
        scorer=scorers,
        experiments=build_experiments(settings, blobs),
    )


def build_experiments(settings: RecommendSettings, blobs: BlobStore) -> Experiments | None:
    """The A/B test configuration's reader (nothing is read until the first request)."""
    flags = experiment_flags(settings, blobs)
    return Experiments(flags) if flags is not None else None


def load_snapshot(blobs: BlobStore, bundled: Path | None) -> tuple[PopularitySnapshot, bool]:
    """The newest snapshot there is (S3's, else the bundled one, else an empty one), and whether S3
    answered."""
    try:
        raw = blobs.get(SNAPSHOT_KEY)
        reachable = True
    except StoreUnavailableError as error:
        logger.warning("popularity snapshot: S3 unreachable at init", extra={"error": str(error)})
        raw, reachable = None, False
    if raw is not None:
        try:
            snapshot = PopularitySnapshot.parse(raw, blobs.uri(SNAPSHOT_KEY))
        except (ValueError, KeyError, TypeError) as error:
            logger.error("popularity snapshot: unreadable in S3", extra={"error": str(error)})
        else:
            _loaded(snapshot, blobs.uri(SNAPSHOT_KEY))
            return snapshot, reachable
    try:
        snapshot = PopularitySnapshot.load(bundled)
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.error("popularity snapshot: the bundled file is unreadable", extra={"error": str(error)})
        snapshot = PopularitySnapshot()
    _loaded(snapshot, str(bundled))
    return snapshot, reachable


def preload_model(store: ServingStore, scorers: ScorerCache) -> None:
    try:
        publication = store.publication()
    except StoreUnavailableError as error:
        logger.warning("model artifact: no publication read at init", extra={"error": str(error)})
        return
    if scorers(publication.manifest) is None and publication.manifest is not None:
        logger.warning("model artifact: not loaded at init", extra={"version": publication.version})


def _loaded(snapshot: PopularitySnapshot, source: str) -> None:
    if snapshot.items:
        logger.info(
            "popularity snapshot loaded",
            extra={"source": source, "version": snapshot.version, "items": len(snapshot.items)},
        )
    else:
        logger.warning(
            "popularity snapshot: none at init; Redis down means empty lists", extra={"source": source}
        )
