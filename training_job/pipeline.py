"""``python -m training_job train``: the scheduled job (EventBridge Scheduler -> Step Functions -> ECS).

MongoDB -> dataset as of a cutoff -> popularity and NeuMF -> quality gate -> publish to Redis and S3.
Exit status: 0 published, 3 the gate kept the previous model, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

from movierec.config import TrainingSettings
from movierec.observability import logger
from movierec.publication import Item
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.mongo import connect_mongo
from movierec.stores.publication import PublicationStore
from movierec.stores.training_source import read_dataset, retired_movies
from training_job.publishing import compute_popularity, movie_infos, publish

EXIT_GATE_REJECTED = 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training_job train", description=__doc__)
    parser.add_argument("--cutoff", type=datetime.fromisoformat, help="train on events before this ISO time")
    parser.add_argument("--popularity-only", action="store_true", help="skip NeuMF; publish popularity only")
    parser.add_argument("--budget-seconds", type=float, default=600.0, help="tuning and training budget")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = TrainingSettings()
    return run(settings, cutoff=args.cutoff, popularity_only=args.popularity_only)


def run(settings: TrainingSettings, cutoff: datetime | None = None, popularity_only: bool = False) -> int:
    started = time.perf_counter()
    database = connect_mongo(settings)
    redis_client = connect_redis(settings)
    blobs = BlobStore(settings.artifact_bucket)
    store = PublicationStore(redis_client)

    if cutoff is not None and cutoff.tzinfo is None:
        cutoff = cutoff.replace(tzinfo=UTC)
    dataset = read_dataset(database, cutoff)
    retired = retired_movies(database)
    interactions = dataset.interactions
    data_cutoff = float(interactions.timestamp.max()) if len(interactions) else time.time()
    logger.info(
        "dataset read",
        extra={"users": len(dataset.users), "movies": len(dataset.movies), "interactions": len(interactions)},
    )
    if len(interactions) == 0:
        logger.error("no interactions to train on; nothing published")
        return EXIT_GATE_REJECTED

    popularity = compute_popularity(dataset, retired, as_of=data_cutoff)
    recommendations: Iterator[tuple[str, list[Item]]] = iter(())
    if not popularity_only:
        logger.info("model training is not wired in yet; publishing popularity")
    publication = publish(
        store,
        blobs,
        popularity,
        recommendations,
        movie_infos(dataset),
        data_cutoff=data_cutoff,
        grace_seconds=settings.publish_grace_seconds,
    )
    logger.info(
        "published",
        extra={
            "version": publication.version,
            "replaced": publication.replaced,
            "segments": len(publication.segments),
            "users_published": publication.users_published,
            "seconds": round(time.perf_counter() - started, 2),
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
