"""``python -m training_job train``: the scheduled job (EventBridge Scheduler -> Step Functions -> ECS).

MongoDB -> dataset as of a cutoff -> popularity and NeuMF -> quality gate -> publish to Redis and S3.
Exit status: 0 published, 3 the gate kept the previous model, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit

from movierec.artifact import ModelArtifact, load
from movierec.config import TrainingSettings
from movierec.data.dataset import Dataset
from movierec.observability import MetricName, logger, metrics
from movierec.publication import Item
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.mongo import connect_mongo
from movierec.stores.publication import PublicationStore
from movierec.stores.training_source import read_dataset, retired_movies
from training_job.publishing import active_users, compute_popularity, movie_infos, publish, top_n_lists

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
    with metrics_flushed():
        return run(
            settings,
            cutoff=args.cutoff,
            popularity_only=args.popularity_only,
            budget_seconds=args.budget_seconds,
        )


@contextmanager
def metrics_flushed() -> Iterator[None]:
    """Outside Lambda nothing flushes Powertools metrics for us: print the EMF document at the end."""
    try:
        yield
    finally:
        if metrics.metric_set:
            metrics.flush_metrics()


@dataclass(frozen=True)
class ModelOutputs:
    artifact: ModelArtifact
    artifact_uri: str
    metrics: dict[str, float]


def train_model(
    dataset: Dataset,
    cutoff: datetime | None,
    store: PublicationStore,
    blobs: BlobStore,
    budget_seconds: float,
) -> ModelOutputs | None:
    """Fit, evaluate and gate NeuMF; store the run's report and features whatever the verdict.

    Returns None when the gate keeps the published model.
    """
    from training_job.fit import FitConfig, fit  # torch is imported only when a model is trained

    current = store.current_version()
    manifest = store.manifest(current) if current else None
    previous = manifest.metrics if manifest and manifest.model_version else None
    result = fit(dataset, FitConfig(budget_seconds=budget_seconds), cutoff=cutoff, previous_metrics=previous)
    run_prefix = f"runs/{time.strftime('%Y-%m-%d', time.gmtime())}/{result.model_version}/"
    for name, body in result.report_files.items():
        blobs.put(run_prefix + "report/" + name, body, _content_type(name))
    for name, body in result.feature_files.items():
        blobs.put(run_prefix + "features/" + name, body, "application/vnd.apache.parquet")
    logger.info(
        "model evaluated",
        extra={
            "model_version": result.model_version,
            "metrics": result.metrics,
            "baselines": result.baselines,
            "gate": result.gate.reason,
            "report": blobs.uri(run_prefix + "report/report.html"),
        },
    )
    if not result.gate.passed:
        metrics.add_metric(name=MetricName.GATE_REJECTED, unit=MetricUnit.Count, value=1)
        logger.error("quality gate kept the published model", extra={"reason": result.gate.reason})
        return None
    uri = blobs.put(f"models/{result.model_version}/model.npz", result.artifact_bytes)
    return ModelOutputs(load(result.artifact_bytes), uri, result.metrics)


def _content_type(name: str) -> str:
    return {"html": "text/html", "png": "image/png", "json": "application/json"}.get(
        name.rsplit(".", 1)[-1], "application/octet-stream"
    )


def run(
    settings: TrainingSettings,
    cutoff: datetime | None = None,
    popularity_only: bool = False,
    budget_seconds: float = 600.0,
) -> int:
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
    catalogue = movie_infos(dataset)
    recommendations: Iterator[tuple[str, list[Item]]] = iter(())
    model: ModelOutputs | None = None
    if not popularity_only:
        model = train_model(dataset, cutoff, store, blobs, budget_seconds)
        if model is None:
            return EXIT_GATE_REJECTED
        users = active_users(dataset, data_cutoff, settings.active_user_days)
        recommendations = top_n_lists(model.artifact, dataset, users, catalogue, retired, settings.top_n)
    publication = publish(
        store,
        blobs,
        popularity,
        recommendations,
        catalogue,
        data_cutoff=data_cutoff,
        grace_seconds=settings.publish_grace_seconds,
        model_version=model.artifact.metadata.model_version if model else None,
        artifact_uri=model.artifact_uri if model else None,
        metrics=model.metrics if model else None,
    )
    if model is not None:
        metrics.add_metric(name=MetricName.MODEL_PUBLISHED, unit=MetricUnit.Count, value=1)
        metrics.add_metric(
            name=MetricName.MODEL_NDCG_AT_10, unit=MetricUnit.NoUnit, value=model.metrics.get("ndcg@10", 0.0)
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
