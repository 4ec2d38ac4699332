"""``python -m infra.local demo``: the whole product on one machine, end to end.

Local cloud up -> data (seeded synthetic, or a MovieLens release) -> events on the Kinesis stream ->
the ingest function via the event-source-mapping poller -> the training job -> the recommend API on
127.0.0.1:3000, with real requests printed as ``curl`` lines a person can repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from infra.local.apigw import HttpApiServer
from infra.local.bootstrap import bootstrap
from infra.local.demo_features import feature_environment, show_features
from infra.local.demo_requests import Sample, show, show_requests
from infra.local.errors import UsageError
from infra.local.runner import LocalApp
from infra.local.servers import (
    MongoServer,
    MotoServer,
    PrometheusServer,
    PushgatewayServer,
    RedisServer,
    choose_mongo_backend,
    prometheus_available,
)
from infra.local.template import DEFAULT_TEMPLATE, training_environment
from movierec.data.dataset import Dataset
from movierec.events import EventType, SignupEvent, WatchEvent, dump_event
from training_job.sources.movielens import MovieLensFormatError, load_movielens
from training_job.sources.publisher import MIN_PROFILE_AGE, publish
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.stream import KinesisStream

REPO_ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = REPO_ROOT / ".local" / "demo"
JOB_LOGGING = {"LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "INFO"}  # the demo summarises the job's log
NEW_USER = "newcomer-1"

# Small enough to run start to finish in a few minutes on two cores, large enough to be interesting.
# Taste depends on age as much as on region, so the job has a segment definition to choose.
DEMO_DATA = SyntheticConfig(seed=7, n_users=500, n_movies=300, n_events=12_000, n_regions=5, age_taste=1.0)


def register(commands: Any) -> None:
    parser = commands.add_parser("demo", help="the whole product end to end", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the sample requests")
    parser.add_argument(
        "--movielens",
        default=os.environ.get("MOVIELENS"),
        help="a MovieLens release folder instead of synthetic data (or MOVIELENS=PATH)",
    )
    parser.add_argument(
        "--port", type=int, default=3000, help="the API's port (default: %(default)s; 0 = any)"
    )
    parser.add_argument(
        "--events", type=int, default=DEMO_DATA.n_events, help="synthetic interactions (default: %(default)s)"
    )
    parser.add_argument("--budget-seconds", type=float, default=90.0, help="tuning and training budget")
    parser.set_defaults(func=demo_command)


def say(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


class Progress:
    """A one-line counter on a terminal; occasional lines in a log."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last < (0.2 if self.tty else 5.0):
            return
        self.last = now
        line = f"    {self.label}: {done:,}/{total:,} ({100 * done // max(total, 1)}%)"
        print(
            ("\r" + line) if self.tty else line,
            end="" if self.tty and done < total else "\n",
            file=sys.stderr,
            flush=True,
        )


def demo_command(args: argparse.Namespace) -> int:
    with ExitStack() as cleanup:
        dataset = load_data(args.movielens, args.events)
        say(
            f"data: {dataset.name}: {len(dataset.users):,} users, {len(dataset.movies):,} movies, "
            f"{len(dataset.interactions):,} interactions"
        )
        say("starting the local cloud: Redis, MongoDB (wire server), moto on free ports")
        environ = start_cloud(cleanup) | feature_environment(LOG_DIR)
        cleanup.enter_context(patched_environ(environ))
        resources = bootstrap(environ["AWS_ENDPOINT_URL"], DEFAULT_TEMPLATE)
        say(
            f"created the template's resources: stream {resources.stream_name}, "
            f"bucket {resources.bucket_name}"
        )

        stream = KinesisStream(resources.stream_name)
        sent = publish(dataset, stream, progress=Progress("published to Kinesis"))
        say(f"published {sent:,} events to {resources.stream_name}")

        app = LocalApp(DEFAULT_TEMPLATE, environ=environ)
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        functions_log = cleanup.enter_context((LOG_DIR / "functions.log").open("w"))
        for function_id in app.stack.function_ids():
            app.hosts.get(function_id).log = functions_log  # the functions' own logs and metrics
        say(f"the functions log to {LOG_DIR / 'functions.log'}")
        ingest(app, "ingesting through the event-source-mapping poller", sent)

        say("running the training job (python -m training_job train): popularity, NeuMF, gate, publish")
        status = run_training(app, args.budget_seconds, LOG_DIR / "training.log")
        if status not in {0, 3}:
            raise UsageError(f"the training job failed with exit status {status}; see its log above")

        training_env, _ = training_environment(app.stack, app.cloud, environ=app.environ)
        show_features(
            {**app.environ, **training_env}, LOG_DIR, known_user(dataset), top_movies(dataset, 3), say
        )

        newcomer_region = most_common_region(dataset)
        if newcomer_region:
            birth_year = typical_birth_year(dataset)
            sign_up(stream, NEW_USER, newcomer_region, birth_year)
            born = f", born in {birth_year}" if birth_year else ""
            ingest(app, f"a new user {NEW_USER} signs up in region {newcomer_region!r}{born}", 1)

        server = start_api(app, args.port, cleanup)
        say(f"the API is listening on {server.url}")
        known = known_user(dataset)
        newcomer = NEW_USER if newcomer_region else None
        top_pick = show_requests(server.url, known, newcomer, first_genre(dataset), newcomer_region)
        if top_pick is not None:
            watch(stream, known, top_pick)
            ingest(app, f"user {known} watches movie {top_pick}, their top pick, right now", 1)
            title = f"{known} again: the precomputed list is stale now, NeuMF scores online (no {top_pick})"
            show(server.url, Sample(title, "/v1/recommendations?k=5", known))
        show_prometheus(server, environ.get("PUSHGATEWAY_URL"), cleanup)
        if args.once:
            return 0
        say("serving until Ctrl-C")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            say("stopping")
    return 0


# ---- the steps ------------------------------------------------------------------------------------------


def start_cloud(cleanup: ExitStack) -> dict[str, str]:
    redis = cleanup.enter_context(RedisServer())
    backend = choose_mongo_backend()
    mongo_uri = (
        os.environ["MONGODB_URI"]
        if backend == "external"
        else cleanup.enter_context(MongoServer(backend=backend)).uri
    )
    moto = cleanup.enter_context(MotoServer())
    pushgateway: dict[str, str] = {}
    if prometheus_available():  # the training job pushes its run metrics there
        pushgateway["PUSHGATEWAY_URL"] = cleanup.enter_context(PushgatewayServer()).url
    return {
        **pushgateway,
        **os.environ,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "REDIS_URL": redis.url,
        "MONGODB_URI": mongo_uri,
        "POWERTOOLS_TRACE_DISABLED": "true",
        # A few thousand synthetic events leave NeuMF's margin to ALS and EASE within noise: the demo's
        # gate asks it to beat popularity; deployed, it must beat every baseline (docs/training.md).
        "GATE_BASELINES": '["popularity"]',
    }


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """boto3 in this process (the publisher's stream) must reach the same moto as the functions."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def load_data(movielens: str | None, events: int = DEMO_DATA.n_events) -> Dataset:
    if movielens:
        try:
            return load_movielens(Path(movielens))
        except MovieLensFormatError as error:
            raise UsageError(str(error)) from error
    # Recent timestamps, so "trending now" and recency matter; whole hours keep a day's runs identical.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Fewer events get a proportionally smaller catalogue and audience, so the data stays as dense.
    scale = min(1.0, events / DEMO_DATA.n_events)
    config = replace(
        DEMO_DATA,
        n_events=events,
        n_users=max(DEMO_DATA.n_regions * 4, int(DEMO_DATA.n_users * scale)),
        n_movies=max(50, int(DEMO_DATA.n_movies * scale)),
        start=end - timedelta(days=120),
        end=end,
    )
    try:
        return generate(config)
    except ValueError as error:
        raise UsageError(f"--events {events}: {error}") from error


def ingest(app: LocalApp, what: str, expected: int) -> None:
    say(what)
    poller = app.poller()
    poller.log = lambda line: None  # the demo prints a summary instead of a line per batch
    progress = Progress("ingested")
    delivered = 0
    invoke = poller.invoke

    def counting(event: dict[str, Any]) -> Any:
        nonlocal delivered
        result = invoke(event)
        delivered += len(event.get("Records", ()))
        progress(min(delivered, expected), expected)
        return result

    poller.invoke = counting
    started = time.monotonic()
    stats = poller.drain()
    say(f"    {stats.summary()} in {time.monotonic() - started:.1f}s")


def run_training(app: LocalApp, budget_seconds: float, log_path: Path) -> int:
    """The job as `run-job training` runs it; its structured log goes to a file, a summary here."""
    environment, _ = training_environment(app.stack, app.cloud, environ=app.environ)
    argv = [sys.executable, "-m", "training_job", "train", "--budget-seconds", str(budget_seconds)]
    say(f"    its log: {log_path}")
    with log_path.open("w") as log:
        completed = subprocess.run(
            argv, cwd=REPO_ROOT, env={**app.environ, **environment, **JOB_LOGGING}, stdout=log,
            stderr=subprocess.STDOUT, check=False,
        )  # fmt: skip
    for line in log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        summary = TRAINING_SUMMARY.get(record.get("message", "")) if isinstance(record, dict) else None
        if summary:
            say("    " + summary(record))
    return completed.returncode


def _metrics(values: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {values[name]:.3f}" for name in ("hr@10", "ndcg@10", "full_recall@10") if name in values
    )


TRAINING_SUMMARY: dict[str, Any] = {
    "exported": lambda r: f"read {r['interactions']:,} interactions of {r['users']:,} users from MongoDB",
    "model evaluated": lambda r: (
        f"NeuMF {_metrics(r['metrics'])}; "
        + "; ".join(f"{name} {_metrics(values)}" for name, values in r.get("baselines", {}).items())
        + f"; gate: {r['gate']}"
    ),
    "the quality gate kept the published model": lambda r: f"gate REJECTED the model: {r['reason']}",
    "published": lambda r: (
        f"published version {r['version']}: {r['segments']} popularity segments "
        f"(by {r.get('segment_definition', 'region')}, trending weight {r.get('trending_weight', 0.3)}), "
        f"{r['users_published']:,} precomputed lists"
    ),
}


def top_movies(dataset: Dataset, n: int) -> list[int]:
    counts = np.bincount(dataset.interactions.movie, minlength=len(dataset.movies))
    return [int(dataset.movies.ids[i]) for i in np.argsort(-counts, kind="stable")[:n]] + [999_999_999]


def most_common_region(dataset: Dataset) -> str | None:
    regions = Counter(region for region in dataset.users.region if region)
    return regions.most_common(1)[0][0] if regions else None


def typical_birth_year(dataset: Dataset) -> int | None:
    """The birth year of the median known age, as the data publisher derives sign-up birth years."""
    ages = dataset.users.age[dataset.users.age >= MIN_PROFILE_AGE]
    return datetime.now(UTC).year - int(np.median(ages)) if len(ages) else None


def known_user(dataset: Dataset) -> str:
    """An active user (upper quartile): personal enough to show, without having seen everything."""
    activity = Counter(dataset.interactions.user.tolist()).most_common()
    return dataset.users.ids[activity[len(activity) // 4][0]]


def watch(stream: KinesisStream, user_id: str, movie_id: int) -> None:
    event = WatchEvent(
        type=EventType.WATCH,
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"movierec-demo/{user_id}/watch/{movie_id}"),
        occurred_at=datetime.now(UTC),
        user_id=user_id,
        movie_id=movie_id,
        seconds_watched=5400,
        completion=1.0,
    )
    stream.put([(dump_event(event), user_id)])


def sign_up(stream: KinesisStream, user_id: str, region: str, birth_year: int | None = None) -> None:
    event = SignupEvent(
        type=EventType.SIGNUP,
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"movierec-demo/{user_id}"),
        occurred_at=datetime.now(UTC),
        user_id=user_id,
        region=region,
        birth_year=birth_year,
    )
    stream.put([(dump_event(event), user_id)])


def start_api(app: LocalApp, port: int, cleanup: ExitStack) -> HttpApiServer:
    try:
        server = HttpApiServer(app.gateway(), "127.0.0.1", port, metrics=app.metrics)
    except OSError as error:
        raise UsageError(f"cannot listen on 127.0.0.1:{port} ({error.strerror}); pass --port") from error
    threading.Thread(target=server.serve_forever, name="start-api", daemon=True).start()
    cleanup.callback(server.server_close)
    cleanup.callback(server.shutdown)
    return server


# What the demo asks Prometheus once the sample requests are scraped (the Grafana dashboard has more).
PROMQL_SAMPLES = (
    ("requests by route and status", "sum by (route, status) (movierec_http_requests_total)"),
    ("requests by serving tier", "sum by (tier) (movierec_tier_latency_ms_count)"),
    (
        "API p99 latency (s)",
        "histogram_quantile(0.99, sum by (le) (movierec_http_request_duration_seconds_bucket))",
    ),
    ("fallbacks", "sum(movierec_fallback_total) or vector(0)"),
    ("the training run's NDCG@10 (pushed)", 'movierec_model_ndcg_at_10{job="movierec-training"}'),
)


def show_prometheus(server: HttpApiServer, pushgateway_url: str | None, cleanup: ExitStack) -> None:
    """A real Prometheus scraping the API's /metrics and the Pushgateway; a few live queries."""
    if not prometheus_available():
        say("Prometheus is not installed (`make prometheus`): skipping the Prometheus queries")
        return
    prometheus = cleanup.enter_context(
        PrometheusServer(
            api_targets=[server.url.removeprefix("http://")],
            pushgateway=pushgateway_url.removeprefix("http://") if pushgateway_url else None,
            scrape_interval_s=1.0,
        )
    )
    say(f"Prometheus is on {prometheus.url}: it scrapes {server.url}/metrics and {pushgateway_url}")
    for title, promql in PROMQL_SAMPLES:
        try:
            result = prometheus.wait_for(promql, timeout_s=20.0)
        except TimeoutError:
            result = []
        values = ", ".join(f"{_labels(r['metric'])} {float(r['value'][1]):g}" for r in result)
        say(f"    {title}: {promql}\n        -> {values or '(no series yet)'}")


def _labels(metric: dict[str, str]) -> str:
    shown = [
        f"{name}={value}" for name, value in metric.items() if name not in {"__name__", "instance", "job"}
    ]
    return "{" + ",".join(shown) + "}"


def first_genre(dataset: Dataset) -> str:
    genres = Counter(g for movie_genres in dataset.movies.genres for g in movie_genres)
    return "Drama" if "Drama" in genres else genres.most_common(1)[0][0]
