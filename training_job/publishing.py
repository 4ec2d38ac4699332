"""Publication: turn a training run's outputs into what the recommend path reads.

Redis gets a whole new version namespace (popularity per segment, precomputed lists for recently
active users, a manifest) and then one pointer switch; S3 gets the artifact, the report and the
popularity snapshot the recommend function bundles at deploy time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from movierec import keys
from movierec.data.dataset import Dataset
from movierec.popularity import PopularityConfig, RankedList, segment_popularity
from movierec.publication import Item, Manifest, MovieInfo, new_version_id
from movierec.recommend.snapshot import snapshot_json
from movierec.stores.blobs import BlobStore
from movierec.stores.publication import PublicationStore

SNAPSHOT_KEY = "snapshots/popularity.json"
DEFAULT_POPULARITY = PopularityConfig()


@dataclass(frozen=True)
class Publication:
    version: str
    replaced: str | None
    segments: list[str]
    users_published: int
    snapshot_uri: str


def movie_infos(dataset: Dataset) -> dict[int, MovieInfo]:
    movies = dataset.movies
    return {
        int(movies.ids[i]): MovieInfo(movies.titles[i], movies.genres[i], int(movies.year[i]) or None)
        for i in range(len(movies))
        if movies.titles[i]
    }


def compute_popularity(
    dataset: Dataset, retired: set[int], as_of: float, config: PopularityConfig = DEFAULT_POPULARITY
) -> dict[str, list[Item]]:
    """Regional and global popularity as servable lists, retired and unnamed movies left out."""
    interactions = dataset.interactions
    regions = np.asarray([keys.region_segment(r) if r else "" for r in dataset.users.region], dtype=object)
    segment_of_interaction = regions[interactions.user] if len(interactions) else np.zeros(0, dtype=object)
    infos = movie_infos(dataset)
    exclude = np.asarray([int(m) in retired or int(m) not in infos for m in dataset.movies.ids], dtype=bool)
    ranked = segment_popularity(
        interactions.movie,
        interactions.timestamp,
        segment_of_interaction.astype(str),
        len(dataset.movies),
        as_of,
        config,
        exclude,
    )
    return {segment: _items(ranking, dataset, infos) for segment, ranking in ranked.items()}


def _items(ranking: RankedList, dataset: Dataset, infos: Mapping[int, MovieInfo]) -> list[Item]:
    items = []
    for index, score in zip(ranking.movie_indexes, ranking.scores, strict=True):
        movie_id = int(dataset.movies.ids[index])
        info = infos[movie_id]
        items.append(Item(movie_id, float(score), info.title, info.genres, info.year))
    return items


def publish(
    store: PublicationStore,
    blobs: BlobStore,
    popularity: dict[str, list[Item]],
    recommendations: Iterator[tuple[str, list[Item]]],
    catalogue: Mapping[int, MovieInfo],
    data_cutoff: float,
    grace_seconds: int,
    model_version: str | None = None,
    artifact_uri: str | None = None,
    metrics: Mapping[str, float] | None = None,
    trending_weight: float = 0.3,
) -> Publication:
    """Write everything under a fresh version, then switch. A crash before the switch changes nothing
    that readers see."""
    now = time.time()
    version = new_version_id(now)
    genres = sorted({g for info in catalogue.values() for g in info.genres})
    snapshot = snapshot_json(popularity.get(keys.GLOBAL_SEGMENT, []), genres, version)
    snapshot_uri = blobs.put(SNAPSHOT_KEY, snapshot.encode(), "application/json")

    writer = store.begin(version, now)
    writer.put_catalogue(catalogue)
    writer.put_popularity(popularity)
    users_published = writer.put_recommendations(recommendations)
    manifest = Manifest(
        version=version,
        created_at=now,
        data_cutoff=data_cutoff,
        segments=sorted(popularity),
        genres=genres,
        users_published=users_published,
        trending_weight=trending_weight,
        model_version=model_version,
        artifact_uri=artifact_uri,
        metrics=dict(metrics or {}),
    )
    replaced = store.commit(writer, manifest, grace_seconds, now)
    return Publication(version, replaced, sorted(popularity), users_published, snapshot_uri)
