"""Publication: turn a training run's outputs into what the recommend path reads.

Redis gets a whole new version namespace (popularity per segment, precomputed lists for recently
active users, a manifest) and then one pointer switch; S3 gets the artifact, the report and the
popularity snapshot the recommend function bundles at deploy time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from movierec import keys, segments
from movierec.artifact import ModelArtifact
from movierec.data.dataset import Dataset
from movierec.popularity import PopularityConfig, RankedList, segment_popularity
from movierec.publication import Item, Manifest, MovieInfo, new_version_id
from movierec.recommend.online import RETRIEVAL_CANDIDATES
from movierec.recommend.snapshot import SNAPSHOT_KEY, snapshot_json
from movierec.stores.blobs import BlobStore
from training_job.stores.publication import PublicationStore

DEFAULT_POPULARITY = PopularityConfig()
_LEGACY = Manifest(version="", created_at=0.0, data_cutoff=0.0)  # what a manifest without the fields means


@dataclass(frozen=True)
class PopularityPolicy:
    """How popularity is segmented and served; the training job chooses it on validation."""

    definition: str = _LEGACY.segment_attribute
    shrink: float = DEFAULT_POPULARITY.shrinkage_strength
    trending_weight: float = _LEGACY.trending_weight

    def __post_init__(self) -> None:
        segments.parse_definition(self.definition)  # a typo must fail here, not silently at serving

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> PopularityPolicy:
        return cls(str(document["definition"]), float(document["shrink"]), float(document["trending_weight"]))


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
    dataset: Dataset,
    retired: set[int],
    as_of: float,
    policy: PopularityPolicy = PopularityPolicy(),
    config: PopularityConfig = DEFAULT_POPULARITY,
) -> dict[str, list[Item]]:
    """Popularity for the policy's segments, region segments and ``global`` as servable lists,
    retired and unnamed movies left out.

    Region segments are published whatever the definition: ``/v1/popular?region=`` (an anonymous
    visitor has a region and nothing else) and the regional trending counters are keyed on them."""
    interactions = dataset.interactions
    config = replace(config, shrinkage_strength=policy.shrink)
    infos = movie_infos(dataset)
    exclude = np.asarray([int(m) in retired or int(m) not in infos for m in dataset.movies.ids], dtype=bool)
    lists: dict[str, list[Item]] = {}
    for definition in dict.fromkeys([policy.definition, segments.REGION]):
        names = np.asarray(
            [n or "" for n in segments.dataset_segments(definition, dataset.users)], dtype=object
        )
        segment_of_interaction = names[interactions.user] if len(interactions) else np.zeros(0, dtype=object)
        ranked = segment_popularity(
            interactions.movie,
            interactions.timestamp,
            segment_of_interaction.astype(str),
            len(dataset.movies),
            as_of,
            config,
            exclude,
        )
        lists |= {segment: _items(ranking, dataset, infos) for segment, ranking in ranked.items()}
    return lists


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
    policy: PopularityPolicy = PopularityPolicy(),
    challenger: str | None = None,
) -> Publication:
    """Write everything under a fresh version, then switch. A crash before the switch changes nothing
    that readers see. With ``challenger`` (an experiment variant's name) the version goes live beside the
    current one instead, pinned under that name; the current pointer and the snapshot stay."""
    now = time.time()
    version = new_version_id(now)
    genres = sorted({g for info in catalogue.values() for g in info.genres})
    snapshot_uri = blobs.uri(SNAPSHOT_KEY)
    if challenger is None:
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
        segment_attribute=policy.definition,
        segments=sorted(popularity),
        genres=genres,
        users_published=users_published,
        trending_weight=policy.trending_weight,
        model_version=model_version,
        artifact_uri=artifact_uri,
        metrics=dict(metrics or {}),
    )
    if challenger is not None:
        replaced = store.commit_challenger(writer, manifest, challenger, grace_seconds, now)
    else:
        replaced = store.commit(writer, manifest, grace_seconds, now)
    return Publication(version, replaced, sorted(popularity), users_published, snapshot_uri)


def active_users(dataset: Dataset, as_of: float, days: int) -> list[int]:
    """Row indexes of users with an interaction in the last ``days`` before ``as_of``."""
    interactions = dataset.interactions
    recent = interactions.timestamp >= as_of - days * 86_400
    return sorted(set(np.unique(interactions.user[recent]).tolist()))


def top_n_lists(
    artifact: ModelArtifact,
    dataset: Dataset,
    users: list[int],
    catalogue: Mapping[int, MovieInfo],
    exclude_movies: set[int],
    n: int,
    retrieval_candidates: int = RETRIEVAL_CANDIDATES,
    batch_size: int = 512,
) -> Iterator[tuple[str, list[Item]]]:
    """Precomputed lists, in batches of users, never a full users x movies matrix in memory.

    Stage one retrieves candidates by the GMF dot product (one matrix product per batch); stage two
    re-ranks them with the full NeuMF. Seen, retired and unnamed movies are excluded.
    """
    interactions = dataset.interactions
    # The dataset's movie rows and the artifact's movie indexes differ; map through the external ids.
    to_artifact = np.full(len(dataset.movies), -1, dtype=np.int64)
    for row, movie_id in enumerate(dataset.movies.ids):
        index = artifact.movie_index(int(movie_id))
        if index is not None:
            to_artifact[row] = index
    never = np.zeros(artifact.n_movies, dtype=bool)
    for index, movie_id in enumerate(artifact.movie_ids):
        never[index] = int(movie_id) in exclude_movies or int(movie_id) not in catalogue

    order = np.argsort(interactions.user, kind="stable")
    starts = np.searchsorted(interactions.user[order], np.arange(len(dataset.users) + 1))
    width = min(retrieval_candidates, artifact.n_movies)
    for first in range(0, len(users), batch_size):
        rows = [
            u
            for u in users[first : first + batch_size]
            if artifact.user_index(dataset.users.ids[u]) is not None
        ]
        if not rows:
            continue
        model_users = np.asarray([artifact.user_index(dataset.users.ids[u]) for u in rows], dtype=np.int64)
        scores = artifact.retrieval_scores(model_users)  # what ModelArtifact.retrieve ranks by
        scores[:, never] = -np.inf
        for i, row in enumerate(rows):
            seen = to_artifact[interactions.movie[order[starts[row] : starts[row + 1]]]]
            scores[i, seen[seen >= 0]] = -np.inf
        candidates = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        logits = artifact.logits_many(model_users, candidates)
        logits[~np.isfinite(np.take_along_axis(scores, candidates, axis=1))] = -np.inf
        ranked = np.argsort(-logits, axis=1, kind="stable")[:, :n]
        for i, row in enumerate(rows):
            chosen = candidates[i, ranked[i]]
            keep = np.isfinite(logits[i, ranked[i]])
            items = []
            for index, logit in zip(chosen[keep], logits[i, ranked[i]][keep], strict=True):
                movie_id = int(artifact.movie_ids[index])
                info = catalogue[movie_id]
                items.append(
                    Item(movie_id, float(1 / (1 + np.exp(-logit))), info.title, info.genres, info.year)
                )
            yield dataset.users.ids[row], items
