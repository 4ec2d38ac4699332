"""``python -m training_job train``: the scheduled job (EventBridge Scheduler -> Step Functions -> ECS).

Three stages, each runnable on its own so the state machine can retry one without redoing the others:

- ``export``: MongoDB -> the run's dataset, under ``s3://$ARTIFACT_BUCKET/runs/RUN_ID/``;
- ``fit``: NeuMF trained, evaluated against baselines and gated; the report, the dated feature snapshot
  and (when the gate passes) the artifact are stored; the decision is written to the run's prefix;
- ``publish``: popularity and precomputed lists to a new Redis version, then one pointer switch.

``--stage all`` (the default) runs the three in one process. Exit status: 0 done, 3 the quality gate
kept the published model (nothing published), 2 bad configuration or input, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from movierec.artifact import ModelArtifact, load
from movierec.config import TrainingSettings
from movierec.data.dataset import Dataset, dataset_from_bytes, dataset_to_bytes
from movierec.observability import MetricName, logger, metrics
from movierec.popularity import PopularityConfig
from movierec.publication import Item
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.documents import EventDocuments
from movierec.stores.experiments import experiment_flags
from movierec.stores.mongo import connect_mongo
from training_job.publishing import (
    DEFAULT_POPULARITY,
    PopularityPolicy,
    active_users,
    compute_popularity,
    movie_infos,
    publish,
    top_n_lists,
)
from training_job.stores.publication import PublicationStore
from training_job.stores.training_source import read_dataset, retired_movies

EXIT_GATE_REJECTED = 3
EXIT_BAD_INPUT = 2
STAGES = ("export", "fit", "publish", "attribute", "all")


class StageInputError(Exception):
    """A stage's input is missing (for example ``fit`` before ``export``): a configuration error."""


@dataclass(frozen=True)
class FitDecision:
    """What ``fit`` leaves for ``publish`` in ``runs/RUN_ID/decision.json``."""

    passed: bool
    reason: str
    model_version: str
    artifact_uri: str | None
    metrics: dict[str, float]
    popularity: dict[str, Any] | None = None  # PopularityPolicy.to_dict(); None in older decisions

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> FitDecision:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class RunInputs:
    dataset: Dataset
    retired: set[int]
    data_cutoff: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``train`` command's arguments, on the one parser of ``python -m training_job``."""
    parser.add_argument("--stage", choices=STAGES, default="all")
    parser.add_argument("--run-id", default=None, help="names the run's S3 prefix (default: the start time)")
    parser.add_argument("--cutoff", type=datetime.fromisoformat, help="train on events before this ISO time")
    parser.add_argument("--popularity-only", action="store_true", help="skip NeuMF; publish popularity only")
    parser.add_argument("--budget-seconds", type=float, default=600.0, help="tuning and training budget")
    parser.add_argument(
        "--challenger",
        metavar="VARIANT",
        default=None,
        help="publish a model that passes the gate as a challenger pinned under this experiment variant,"
        " beside the champion (overrides CHALLENGER_VARIANT)",
    )


def run(args: argparse.Namespace) -> int:
    """Runs the parsed ``train`` command; the process's exit status."""
    try:
        overrides = {"challenger_variant": args.challenger} if args.challenger is not None else {}
        settings = TrainingSettings(**overrides)
    except ValidationError as error:
        print(f"error: bad configuration: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if settings.challenger_variant is not None and args.popularity_only:
        print(
            "error: --popularity-only publishes no model, so it cannot publish a challenger", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    run_id = args.run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    cutoff = args.cutoff.replace(tzinfo=UTC) if args.cutoff and args.cutoff.tzinfo is None else args.cutoff
    with metrics_flushed():
        try:
            return Pipeline(settings, run_id).run(
                args.stage, cutoff, args.popularity_only, args.budget_seconds
            )
        except StageInputError as error:
            logger.error(str(error))
            return EXIT_BAD_INPUT


@contextmanager
def metrics_flushed() -> Iterator[None]:
    """Outside Lambda nothing flushes Powertools metrics for us: print the EMF document at the end."""
    try:
        yield
    finally:
        # The provider's set: with a custom provider, ``Metrics.metric_set`` stays empty.
        if metrics.provider.metric_set:
            metrics.flush_metrics()


class Pipeline:
    def __init__(self, settings: TrainingSettings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        self.blobs = BlobStore(settings.artifact_bucket)
        self.prefix = f"runs/{run_id}/"

    def run(self, stage: str, cutoff: datetime | None, popularity_only: bool, budget_seconds: float) -> int:
        started = time.perf_counter()
        if stage == "attribute":  # online metrics of what was served (training_job/attribution_stage.py)
            from training_job.attribution_stage import run_attribution

            run_attribution(
                self.blobs,
                EventDocuments(connect_mongo(self.settings)),
                self.prefix + "report/",
                flags=experiment_flags(self.settings, self.blobs),
            )
            return 0
        inputs = self.export(cutoff) if stage in {"export", "all"} else self.load_inputs()
        if stage == "export":
            return 0
        decision: FitDecision | None = None
        artifact: ModelArtifact | None = None
        if not popularity_only and stage in {"fit", "all"}:
            decision, artifact = self.fit(inputs, cutoff, budget_seconds)
            if not decision.passed:
                if stage == "all":
                    self.publish_popularity_if_nothing_is_published(inputs, decision)
                return EXIT_GATE_REJECTED
        if stage == "fit":
            return 0
        if stage == "publish" and not popularity_only:
            decision, artifact = self.load_decision()
            if decision is not None and not decision.passed:
                logger.info("the quality gate rejected this run's model; the published version stays")
                self.publish_popularity_if_nothing_is_published(inputs, decision)
                return EXIT_GATE_REJECTED
        self.publish(inputs, decision, artifact)
        logger.info(
            "pipeline finished", extra={"stage": stage, "seconds": round(time.perf_counter() - started, 1)}
        )
        return 0

    # ---- export ------------------------------------------------------------------------------------------

    def export(self, cutoff: datetime | None) -> RunInputs:
        database = connect_mongo(self.settings)
        dataset = read_dataset(database, cutoff)
        retired = retired_movies(database)
        interactions = dataset.interactions
        if len(interactions) == 0:
            raise StageInputError("MongoDB holds no interactions to train on; nothing exported")
        data_cutoff = float(interactions.timestamp.max())
        self.blobs.put(self.prefix + "dataset.npz", dataset_to_bytes(dataset))
        self.blobs.put(
            self.prefix + "export.json",
            json.dumps({"retired": sorted(retired), "data_cutoff": data_cutoff}).encode(),
            "application/json",
        )
        logger.info(
            "exported",
            extra={
                "run_id": self.run_id,
                "users": len(dataset.users),
                "movies": len(dataset.movies),
                "interactions": len(interactions),
            },
        )
        return RunInputs(dataset, retired, data_cutoff)

    def load_inputs(self) -> RunInputs:
        raw_dataset = self.blobs.get(self.prefix + "dataset.npz")
        raw_export = self.blobs.get(self.prefix + "export.json")
        if raw_dataset is None or raw_export is None:
            raise StageInputError(
                f"run {self.run_id} has no export at {self.blobs.uri(self.prefix)}; run --stage export"
            )
        export = json.loads(raw_export)
        return RunInputs(
            dataset_from_bytes(raw_dataset), set(export["retired"]), float(export["data_cutoff"])
        )

    # ---- fit ---------------------------------------------------------------------------------------------

    def fit(
        self, inputs: RunInputs, cutoff: datetime | None, budget_seconds: float
    ) -> tuple[FitDecision, ModelArtifact | None]:
        """Fit, evaluate and gate NeuMF; store the report and features whatever the verdict."""
        from training_job.fit import FitConfig, GateConfig, fit  # torch is imported only to train

        store = PublicationStore(connect_redis(self.settings))
        current = store.current_version()
        manifest = store.manifest(current) if current else None
        previous = manifest.metrics if manifest and manifest.model_version else None
        config = FitConfig(
            budget_seconds=budget_seconds, gate=GateConfig(baselines=self.settings.gate_baselines)
        )
        result = fit(inputs.dataset, config, cutoff=cutoff, previous_metrics=previous)
        dated = f"{self.prefix}features/{time.strftime('%Y-%m-%d', time.gmtime(inputs.data_cutoff))}/"
        for name, body in result.feature_files.items():
            self.blobs.put(dated + name, body, "application/vnd.apache.parquet")
        for name, body in result.report_files.items():
            self.blobs.put(self.prefix + "report/" + name, body, _content_type(name))
        artifact_uri = None
        if result.gate.passed:
            artifact_uri = self.blobs.put(f"models/{result.model_version}/model.npz", result.artifact_bytes)
        decision = FitDecision(
            result.gate.passed,
            result.gate.reason,
            result.model_version,
            artifact_uri,
            result.metrics,
            result.params["segment_popularity"],
        )
        self.blobs.put(self.prefix + "decision.json", decision.to_json(), "application/json")
        logger.info(
            "model evaluated",
            extra={
                "model_version": result.model_version,
                "metrics": result.metrics,
                "baselines": result.baselines,
                "segments": result.segments,
                "gate": result.gate.reason,
                "report": self.blobs.uri(self.prefix + "report/report.html"),
            },
        )
        metrics.add_metric(
            name=MetricName.MODEL_NDCG_AT_10, unit=MetricUnit.NoUnit, value=result.metrics.get("ndcg@10", 0.0)
        )
        if not result.gate.passed:
            metrics.add_metric(name=MetricName.GATE_REJECTED, unit=MetricUnit.Count, value=1)
            logger.error("the quality gate kept the published model", extra={"reason": result.gate.reason})
            return decision, None
        return decision, load(result.artifact_bytes)

    def load_decision(self) -> tuple[FitDecision | None, ModelArtifact | None]:
        raw = self.blobs.get(self.prefix + "decision.json")
        if raw is None:
            return None, None  # a popularity-only run
        decision = FitDecision.from_json(raw)
        if not decision.passed or decision.artifact_uri is None:
            return decision, None
        key = decision.artifact_uri.removeprefix(f"s3://{self.blobs.bucket}/")
        body = self.blobs.get(key)
        if body is None:
            raise StageInputError(f"the run's artifact {decision.artifact_uri} is missing")
        return decision, load(body)

    # ---- publish -----------------------------------------------------------------------------------------

    def publish_popularity_if_nothing_is_published(self, inputs: RunInputs, decision: FitDecision) -> None:
        """A rejected model keeps the published version. On the very first run there is none, and
        new users would get nothing: popularity needs no gate, so it is published alone."""
        if PublicationStore(connect_redis(self.settings)).current_version() is None:
            logger.info("nothing is published yet: publishing popularity without the rejected model")
            self.publish(inputs, decision, None)

    def publish(
        self, inputs: RunInputs, decision: FitDecision | None, artifact: ModelArtifact | None
    ) -> None:
        dataset = inputs.dataset
        policy = self.popularity_policy(inputs, decision)
        popularity = compute_popularity(
            dataset, inputs.retired, inputs.data_cutoff, policy, self.popularity_config
        )
        catalogue = movie_infos(dataset)
        recommendations: Iterator[tuple[str, list[Item]]] = iter(())
        if artifact is not None:
            users = active_users(dataset, inputs.data_cutoff, self.settings.active_user_days)
            recommendations = top_n_lists(
                artifact, dataset, users, catalogue, inputs.retired, self.settings.top_n
            )
        store = PublicationStore(connect_redis(self.settings))
        challenger = self.challenger(store) if artifact is not None else None
        publication = publish(
            store,
            self.blobs,
            popularity,
            recommendations,
            catalogue,
            data_cutoff=inputs.data_cutoff,
            grace_seconds=self.settings.publish_grace_seconds,
            model_version=decision.model_version if decision and artifact else None,
            artifact_uri=decision.artifact_uri if decision and artifact else None,
            metrics=decision.metrics if decision and artifact else None,
            policy=policy,
            challenger=challenger,
        )
        if artifact is not None:
            metrics.add_metric(name=MetricName.MODEL_PUBLISHED, unit=MetricUnit.Count, value=1)
        logger.info(
            "published",
            extra={
                "version": publication.version,
                "replaced": publication.replaced,
                "segments": len(publication.segments),
                "segment_definition": policy.definition,
                "trending_weight": policy.trending_weight,
                "users_published": publication.users_published,
                "model_version": decision.model_version if decision and artifact else None,
                "challenger": challenger,
            },
        )

    def challenger(self, store: PublicationStore) -> str | None:
        """The variant to pin this run's model under; None to make it the champion, which is also what
        happens when nothing is published yet (a challenger needs a champion to be compared with)."""
        variant = self.settings.challenger_variant
        if variant is not None and store.current_version() is None:
            logger.info("nothing is published yet: the challenger is published as the champion")
            return None
        return variant

    @property
    def popularity_config(self) -> PopularityConfig:
        return replace(DEFAULT_POPULARITY, top_n=self.settings.popularity_n)

    def popularity_policy(self, inputs: RunInputs, decision: FitDecision | None) -> PopularityPolicy:
        """The fit stage's choice; a run without one (``--popularity-only``) makes it here, on
        validation alone: it needs no model."""
        if decision is not None and decision.popularity is not None:
            return PopularityPolicy.from_dict(decision.popularity)
        from training_job.segment_choice import choose_for_dataset  # its negative sampler loads torch

        report = choose_for_dataset(inputs.dataset, int(inputs.data_cutoff) + 1)
        logger.info("segment popularity chosen", extra={"segments": report.to_dict()})
        return report.policy


def _content_type(name: str) -> str:
    return {"html": "text/html", "png": "image/png", "json": "application/json"}.get(
        name.rsplit(".", 1)[-1], "application/octet-stream"
    )
