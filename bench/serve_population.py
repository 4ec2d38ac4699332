"""The serve benchmark's plans and synthetic population (``python -m bench.serve``): how much each plan
runs, a seeded catalogue, a version published the way the training job publishes it (lists, popularity,
a real NeuMF artifact, the popularity snapshot) and the real-time state ingest writes."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.common import progress
from movierec import keys
from movierec.contracts import Engagement, MovieChange, ProfileChange
from movierec.publication import Item, MovieInfo
from movierec.recommend.snapshot import SNAPSHOT_KEY
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import RedisClient
from movierec.stores.realtime import RealtimeState, TrendingPolicy
from training_job.fit import FitConfig, fit
from training_job.model import NeuMFParams
from training_job.publishing import publish
from training_job.sources.synthetic import GENRES, REGIONS, SyntheticConfig, generate
from training_job.stores.publication import PIPELINE_CHUNK, PublicationStore

SEED = 20_261_105
LIST_LENGTH = 100  # TrainingSettings.top_n: what a published list holds
POPULAR_LENGTH = 200  # TrainingSettings.popularity_n
TRENDING = TrendingPolicy(bucket_seconds=3_600, buckets_kept=48)  # IngestSettings' defaults


@dataclass(frozen=True)
class Plan:
    name: str
    movies: int
    users_per_tier: int
    samples: int  # per tier, interleaved
    warmup: int
    snapshot_samples: int
    unresponsive_samples: int  # each waits for the Redis client's socket timeouts
    load_seconds: float  # per concurrency level
    publish_users: int
    publish_rounds: int
    profile_calls: int
    model_users: int  # the synthetic data the online tier's model is fitted on
    model_events: int


QUICK = Plan(
    name="quick",
    movies=3_000,
    users_per_tier=300,
    samples=400,
    warmup=50,
    snapshot_samples=400,
    unresponsive_samples=5,
    load_seconds=2.0,
    publish_users=1_000,
    publish_rounds=3,
    profile_calls=500,
    model_users=1_000,
    model_events=40_000,
)
FULL = Plan(
    name="full",
    movies=10_000,
    users_per_tier=2_000,
    samples=3_000,
    warmup=200,
    snapshot_samples=3_000,
    unresponsive_samples=20,
    load_seconds=10.0,
    publish_users=5_000,
    publish_rounds=5,
    profile_calls=3_000,
    model_users=5_000,
    model_events=200_000,
)


@dataclass
class Population:
    version: str
    catalogue: dict[int, MovieInfo]
    users: dict[str, list[str]]  # tier -> user ids
    snapshot_path: Path


def make_catalogue(rng: random.Random, count: int) -> dict[int, MovieInfo]:
    words = ("Night", "City", "Dragon", "Love", "War", "Star", "River", "Ghost", "Iron", "Summer")
    return {
        movie_id: MovieInfo(
            f"{rng.choice(words)} {rng.choice(words)} {movie_id}",
            tuple(rng.sample(GENRES, rng.randint(1, 3))),
            rng.randint(1930, 2026),
        )
        for movie_id in range(1, count + 1)
    }


def ranked(rng: random.Random, catalogue: dict[int, MovieInfo], length: int) -> list[Item]:
    movie_ids = rng.sample(sorted(catalogue), length)
    return [
        Item(m, round(1.0 - rank / length, 6), catalogue[m].title, catalogue[m].genres, catalogue[m].year)
        for rank, m in enumerate(movie_ids)
    ]


def populate(client: RedisClient, blobs: BlobStore, plan: Plan, work_dir: Path) -> Population:
    """Publish a version the way the training job does, then add the real-time state ingest writes."""
    rng = random.Random(SEED)
    catalogue = make_catalogue(rng, plan.movies)
    n = plan.users_per_tier
    users = {
        "personalized": [f"p{i}" for i in range(n)],
        # Online users are unknown to the model (it folds in their recent watches) and each is timed
        # once: a second request would be answered from the list the first one cached.
        "online": [f"o{i}" for i in range(plan.warmup + plan.samples)],
        "regional_popular": [f"r{i}" for i in range(n)],
        "global_popular": [f"g{i}" for i in range(n)],
    }
    users["snapshot"] = users["personalized"]
    popularity = {keys.GLOBAL_SEGMENT: ranked(rng, catalogue, POPULAR_LENGTH)}
    for region in REGIONS:
        popularity[keys.region_segment(region)] = ranked(rng, catalogue, POPULAR_LENGTH)
    lists = ((user, ranked(rng, catalogue, LIST_LENGTH)) for user in users["personalized"])
    model_version, artifact_uri = fit_model(plan, blobs)
    now = time.time()
    publication = publish(
        PublicationStore(client),
        blobs,
        popularity,
        lists,
        catalogue,
        data_cutoff=now - 60,
        grace_seconds=3_600,
        model_version=model_version,
        artifact_uri=artifact_uri,
    )
    # Real-time state, through ingest's own store. Personalized and online users have watched 20
    # movies (before the publication's cutoff, so precomputed lists are not stale). Popularity users
    # are cold starts with no activity, or online scoring would answer them: regional users have
    # signed up with a region, global users have told us nothing.
    state = RealtimeState(client, recent_length=50, applied_ttl_seconds=8 * 24 * 3_600)
    movie_ids = sorted(catalogue)
    for tier in ("personalized", "online", "regional_popular"):
        engagements: list[Engagement] = []
        profiles: list[ProfileChange] = []
        for user in users[tier]:
            if tier != "regional_popular":
                for movie_id in rng.sample(movie_ids, 20):
                    at = now - rng.uniform(600, 7_200)
                    engagements.append(Engagement(uuid.uuid4().hex, user, movie_id, at, "watch"))
            if tier in {"personalized", "regional_popular"}:
                profiles.append(ProfileChange(user, {"region": rng.choice(REGIONS)}, "v1"))
        state.apply(engagements, profiles, [], TRENDING, now)
    retired = [MovieChange(m, "v1", retired=True) for m in rng.sample(movie_ids, 25)]
    state.apply([], [], retired, TRENDING, now)
    snapshot = blobs.get(SNAPSHOT_KEY)
    if snapshot is None:
        raise RuntimeError("publish() wrote no popularity snapshot")
    snapshot_path = work_dir / "popularity-snapshot.json"
    snapshot_path.write_bytes(snapshot)  # what the deploy bundles next to the function
    return Population(publication.version, catalogue, users, snapshot_path)


def fit_model(plan: Plan, blobs: BlobStore) -> tuple[str, str]:
    """A real NeuMF artifact, of the default shape, over the catalogue's movie ids (1..movies): a short
    fit on synthetic data, uploaded where the training pipeline puts it. Its quality is beside the
    point here; its size (movies x factors, the MLP) is what online scoring's latency depends on."""
    progress(f"fitting a NeuMF model over {plan.movies:,} movies for the online tier")
    data = generate(
        SyntheticConfig(n_users=plan.model_users, n_movies=plan.movies, n_events=plan.model_events, seed=SEED)
    )
    config = FitConfig(budget_seconds=1.0, params=NeuMFParams(), max_epochs=2, max_trials=1, progress=False)
    result = fit(data, config)
    uri = blobs.put(f"models/{result.model_version}/model.npz", result.artifact_bytes)
    return result.model_version, uri


def forget_online_lists(client: RedisClient, version: str, users: Sequence[str]) -> None:
    """Drop the lists online scoring cached, so the next request for each user scores again (untimed)."""
    delete_keys(client, [keys.online_recommendations(version, user) for user in users])


def delete_keys(client: RedisClient, names: Sequence[str]) -> None:
    for start in range(0, len(names), PIPELINE_CHUNK):
        client.unlink(*names[start : start + PIPELINE_CHUNK])
