"""One history length for training, ingest and serving: the fold-in depth cannot skew.

A user engages with more movies than the model reads. Ingest (with its deployed defaults) keeps their
recent list in a real Redis, serving reads it back, and training's fold-in picks the latest movies of
the same history: all three must be the same ``HISTORY_LENGTH`` movies.
"""

from __future__ import annotations

import numpy as np
import redis

from movierec.config import IngestSettings
from movierec.contracts import Engagement
from movierec.history import HISTORY_LENGTH
from movierec.ingest.wiring import build_realtime_state, trending_policy
from movierec.stores.serving import ServingStore
from tests.support import BASE_TIME
from training_job.data import Positives
from training_job.experiment import recent_means

ENGAGEMENTS = HISTORY_LENGTH + 17
MOVIES = 200


def test_ingest_serving_and_training_read_the_same_latest_movies(redis_url: str) -> None:
    settings = IngestSettings(
        redis_url=redis_url,
        mongodb_uri="mongodb://127.0.0.1:1",  # not contacted: only Redis state is built here
        dead_letter_queue_url="http://127.0.0.1:1/queue",
        dead_letter_bucket="unused",
    )
    redis.Redis.from_url(redis_url).flushall()
    start = BASE_TIME.timestamp()
    history = [(1 + (n * 37) % MOVIES, start + 60 * n) for n in range(ENGAGEMENTS)]  # distinct movies
    engagements = [Engagement(f"e{n}", "ana", m, at, "watch") for n, (m, at) in enumerate(history)]
    build_realtime_state(settings).apply(engagements, [], [], trending_policy(settings), start + 86_400)

    served = ServingStore(redis.Redis.from_url(redis_url)).read_user("ana")
    latest = [movie for movie, _ in reversed(history[-HISTORY_LENGTH:])]
    assert served.complete
    assert served.recent == latest  # newest first, exactly the model's depth

    train = Positives(
        user=np.zeros(ENGAGEMENTS, dtype=np.int32),
        movie=np.array([m for m, _ in history], dtype=np.int32),
        weight=np.ones(ENGAGEMENTS, dtype=np.float32),
        timestamp=np.array([int(at) for _, at in history], dtype=np.int64),
        rating=np.full(ENGAGEMENTS, np.nan, dtype=np.float32),
        n_users=1,
        n_movies=MOVIES + 1,
    )
    folded = recent_means(train, np.eye(MOVIES + 1, dtype=np.float32))[0]
    assert set(np.flatnonzero(folded)) == set(latest)  # the fold-in reads the same movies
    assert np.allclose(folded[latest], 1.0 / HISTORY_LENGTH)
