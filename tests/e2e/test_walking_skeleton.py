"""The product end to end, as `make demo` runs it, at a size a test can afford.

Synthetic data -> the publisher -> Kinesis (moto) -> the event-source-mapping poller -> the ingest
function -> MongoDB and Redis -> the training job (a real process, popularity only: the NeuMF path has
its own tests) -> the recommend function behind the local HTTP API -> a known user and a new user in a
region get real recommendations over HTTP.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.local.apigw import HttpApiServer, local_jwt
from infra.local.bootstrap import bootstrap
from infra.local.runner import LocalApp
from infra.local.template import DEFAULT_TEMPLATE, training_environment
from movierec.events import EventType, SignupEvent, dump_event
from training_job.sources.publisher import publish
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.stores.stream import KinesisStream

REPO_ROOT = Path(__file__).resolve().parents[2]
END = datetime(2026, 11, 1, tzinfo=UTC)
DATA = SyntheticConfig(
    seed=11, n_users=80, n_movies=60, n_events=1_500, n_regions=3, start=END - timedelta(days=60), end=END
)


@pytest.fixture
def environ(
    redis_client: Any, redis_url: str, mongo_uri: str, mongo_database_name: str, aws_reset: str
) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": aws_reset,
        "REDIS_URL": redis_url,
        "MONGODB_URI": mongo_uri,
        "MONGODB_DATABASE": mongo_database_name,
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


@pytest.fixture
def api(environ: dict[str, str], tmp_path: Path) -> Iterator[tuple[LocalApp, str]]:
    app = LocalApp(DEFAULT_TEMPLATE, environ={**environ, "HOME": str(tmp_path)})
    server = HttpApiServer(app.gateway(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield app, server.url
    server.shutdown()
    server.server_close()


def get(url: str, user: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {local_jwt({'sub': user})}"} if user else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_events_in_recommendations_out(environ: dict[str, str], api: tuple[LocalApp, str]) -> None:
    app, base_url = api
    resources = bootstrap(environ["AWS_ENDPOINT_URL"], DEFAULT_TEMPLATE)
    dataset = generate(DATA)
    stream = KinesisStream(resources.stream_name)

    publish(dataset, stream)
    stats = app.poller().drain()
    assert stats.records_dead_lettered == 0

    env, _ = training_environment(app.stack, app.cloud, environ=app.environ)
    job = subprocess.run(
        [sys.executable, "-m", "training_job", "train", "--popularity-only"],
        cwd=REPO_ROOT, env={**app.environ, **env}, capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr[-2000:]
    # A typical user (the median by activity): the most active ones have seen most of this small catalogue.
    activity = Counter(dataset.interactions.user.tolist()).most_common()
    known = dataset.users.ids[activity[len(activity) // 2][0]]
    status, body = get(f"{base_url}/v1/recommendations?k=5", known)
    assert status == 200
    assert body["source"] in {"regional_popular", "global_popular"}
    assert len(body["items"]) == 5
    seen = {
        int(dataset.movies.ids[m])
        for m in dataset.interactions.movie[dataset.interactions.user == dataset.users.ids.index(known)]
    }
    assert not seen & {item["movie_id"] for item in body["items"]}, "a user is never shown what they watched"

    region = Counter(dataset.users.region).most_common(1)[0][0]
    newcomer = SignupEvent(
        type=EventType.SIGNUP, event_id=uuid.uuid4(), occurred_at=END, user_id="newcomer", region=region
    )
    stream.put([(dump_event(newcomer), "newcomer")])
    app.poller().drain()
    status, body = get(f"{base_url}/v1/recommendations?k=5", "newcomer")
    assert (status, body["source"]) == (200, "regional_popular")
    regional = get(f"{base_url}/v1/popular?k=5&region={region}")[1]
    assert [i["movie_id"] for i in body["items"]] == [i["movie_id"] for i in regional["items"]]

    assert get(f"{base_url}/v1/recommendations")[0] == 401
    assert get(f"{base_url}/health")[1]["status"] == "ok"
