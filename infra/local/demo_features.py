"""``make demo``'s feature-store step: the feature stage as the state machine runs it (``python -m
training_job features``), ``feast feature-views list`` over the generated ``feature_store.yaml``, the
thin online reader for one user and a few movies, and the online tier re-ranking with those rows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from movierec.config import RedisSettings
from movierec.feature_views import MOVIE_STATS_V1, MOVIE_VIEWS, USER_VIEWS
from movierec.recommend.movie_features import FreshMovieFeatures
from movierec.recommend.online import RETRIEVAL_CANDIDATES, ArtifactScorer, ScorerCache
from movierec.stores import aws
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import connect_redis
from movierec.stores.online_features import OnlineFeatureReader
from movierec.stores.serving import ServingStore


def feature_environment(local_dir: Path) -> dict[str, str]:
    """Locally the offline Parquet lives in a folder (reading s3:// needs s3fs, which the training image
    has and the development venv does not); the registry is in the moto bucket, as on AWS."""
    return {"FEATURE_OFFLINE_URI": str(local_dir / "features" / "offline")}


def show_features(
    environ: Mapping[str, str],
    local_dir: Path,
    user_id: str,
    movie_ids: list[int],
    say: Callable[[str], None],
) -> int:
    repo_root = Path(__file__).resolve().parents[2]
    log_path = local_dir / "features.log"
    say(
        "running the feature stage (python -m training_job features): dated Parquet, feast apply, materialize"
    )
    with log_path.open("w") as log:
        completed = subprocess.run(
            [sys.executable, "-m", "training_job", "features"],
            cwd=repo_root, env=dict(environ), stdout=subprocess.PIPE, stderr=log, text=True, check=False,
        )  # fmt: skip
    if completed.returncode != 0:
        say(f"    the feature stage failed ({completed.returncode}); see {log_path}")
        return completed.returncode
    run = _feature_run(completed.stdout)
    if run is None:
        say(f"    the feature stage printed no summary; its output: {completed.stdout[-400:]!r}")
        return 1
    rows = ", ".join(f"{name} {count:,}" for name, count in sorted(run["rows"].items()))
    say(f"    as of {run['as_of'][0]}: {rows} rows; materialized to {run['materialized_to']}")
    say(f"    {len(run['files'])} Parquet files under {environ['FEATURE_OFFLINE_URI']}")

    from training_job.feature_repo.settings import FeatureStoreSettings  # imports no Feast
    from training_job.feature_repo.store import write_feature_store_yaml

    settings = FeatureStoreSettings(
        artifact_bucket=environ["ARTIFACT_BUCKET"],
        feature_offline_uri=environ["FEATURE_OFFLINE_URI"],
        redis_url=environ["REDIS_URL"],
        aws_endpoint_url=environ.get("AWS_ENDPOINT_URL"),
    )
    folder = write_feature_store_yaml(settings, local_dir / "feature_repo").parent
    feast = shutil.which("feast", path=str(Path(sys.executable).parent))
    if feast:
        listing = subprocess.run(
            [feast, "-c", str(folder), "feature-views", "list"],
            env={**environ, "FEAST_S3_ENDPOINT_URL": environ.get("AWS_ENDPOINT_URL", "")},
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        say(f"    feast -c {folder} feature-views list:")
        for line in (listing.stdout or listing.stderr).splitlines():
            say("      " + line)

    reader = OnlineFeatureReader(connect_redis(RedisSettings(redis_url=environ["REDIS_URL"])))
    user, movies = reader.read_user_and_movies(user_id, movie_ids, USER_VIEWS, MOVIE_VIEWS)
    say(f"    online features of user {user_id} (the thin reader, one round trip):")
    for name, row in user.items():
        say(f"      {name}: {_short(row.values)}{'' if row.found else ' (defaults: no row)'}")
    for movie_id, stats, metadata in zip(movie_ids, *movies.values(), strict=True):
        say(
            f"      movie {movie_id}: {metadata.values.get('title')!s} {_short(stats.values)}"
            + ("" if stats.found else " (defaults: no row)")
        )
    show_online_ranking(environ, user_id, reader, say)
    return 0


def show_online_ranking(
    environ: Mapping[str, str], user_id: str, reader: OnlineFeatureReader, say: Callable[[str], None]
) -> None:
    """What the online tier does on a miss: retrieval, then re-ranking with the candidates' online
    ``movie_stats_v1`` rows (recommend/movie_features.py)."""
    client = connect_redis(RedisSettings(redis_url=environ["REDIS_URL"]))
    features = FreshMovieFeatures(reader)
    blobs = BlobStore(environ["ARTIFACT_BUCKET"], aws.bounded_client("s3"))
    scorer = ScorerCache(blobs, movie_features=features)(ServingStore(client).publication().manifest)
    if scorer is None:
        say("    no published model: the online tier would serve popularity")
        return
    if not isinstance(scorer, ArtifactScorer):  # the sequence model reads no movie features yet
        return
    index = scorer.artifact.user_index(user_id)
    if index is None:
        return
    candidates = scorer.artifact.retrieve(index, RETRIEVAL_CANDIDATES)
    movie_ids = [int(m) for m in scorer.artifact.movie_ids[candidates]]
    found = sum(row.found for row in reader.read([MOVIE_STATS_V1], movie_ids)[MOVIE_STATS_V1.name])
    ranked = scorer.rank(user_id, [], frozenset(), 5)
    say(
        f"    the online tier for user {user_id}: {len(movie_ids)} candidates re-ranked with their online"
        f" movie_stats_v1 rows ({found} found"
        + (f"; {len(movie_ids) - found} keep training-time values" if found < len(movie_ids) else "")
        + "); top 5: "
        + ", ".join(f"{movie} ({score:.3f})" for movie, score in ranked)
    )


def _feature_run(stdout: str) -> dict[str, Any] | None:
    """The stage's summary: the last JSON object it printed with the rows it wrote."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "rows" in document:
            return document
    return None


def _short(values: Mapping[str, object]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}"
        if isinstance(value, tuple):
            return "[" + ", ".join(cell(v) for v in value) + "]"
        return str(value)

    return "{" + ", ".join(f"{k}={cell(v)}" for k, v in values.items()) + "}"
