"""The feature views' contract: names, versions, types and the documented defaults.

One home for what the feature store holds, shared by the writer (``training_job/feature_repo``, which
builds Feast's ``Entity``/``FeatureView`` objects from these specs) and the online reader
(``movierec.stores.online_features``, which reads Feast's Redis layout without importing Feast). The
layer must not import Feast (package size, import time: docs/features.md), so the schema lives here as
plain data.

A view's name carries its version (``user_activity_v1``): a change of definition (a feature added,
removed or computed differently) is a new view with a new name, a new Parquet folder and new online
fields, next to the old one. A training run records the view names it read, so re-reading those views
gives the same training set whatever was added later (tested).

Defaults are what a reader returns when the online store has no row for an entity (a user who signed
up after the last materialization, a movie added since): the value ``compute_features`` gives an
entity with no interaction before the cut-off, or a neutral constant where that value depends on the
data (a mean rating). They are part of the contract: the serving tier relies on them, never on a 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from math import log1p
from typing import TypeAlias

PROJECT = "movierec"
"""The Feast project: part of every online key (``serialize_entity_key(...) + project``)."""

NEVER_DAYS = 3650.0
"""Days since the last activity of an entity with none (``training_job/features.py``'s constant)."""

NEUTRAL_RATING = 3.5
"""The mean rating of a user or movie with no ratings at all, in the store's absence."""


class Kind(StrEnum):
    """A feature's value type; the names are Feast's (``feast.types``)."""

    FLOAT32 = "Float32"
    INT64 = "Int64"
    STRING = "String"
    STRING_LIST = "Array(String)"
    FLOAT32_LIST = "Array(Float32)"


FeatureValue: TypeAlias = float | int | str | tuple[str, ...] | tuple[float, ...]


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    kind: Kind
    default: FeatureValue
    description: str


@dataclass(frozen=True)
class EntitySpec:
    name: str  # Feast's entity name
    join_key: str  # the column in sources and entity dataframes
    kind: Kind  # STRING or INT64: how the key is serialised in Redis


@dataclass(frozen=True)
class ViewSpec:
    name: str  # versioned: ``<base>_v<N>``
    entity: EntitySpec
    features: tuple[FeatureSpec, ...]
    ttl_days: int  # a row older than this is not served (get_historical_features: not joined)
    description: str

    @property
    def defaults(self) -> dict[str, FeatureValue]:
        return {f.name: f.default for f in self.features}

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def refs(self) -> list[str]:
        """``view:feature`` references, as ``get_historical_features``/``get_online_features`` take them."""
        return [f"{self.name}:{f.name}" for f in self.features]


USER = EntitySpec("user", "user_id", Kind.STRING)
MOVIE = EntitySpec("movie", "movie_id", Kind.INT64)

_F, _S, _SL, _FL = Kind.FLOAT32, Kind.STRING, Kind.STRING_LIST, Kind.FLOAT32_LIST

USER_ACTIVITY_V1 = ViewSpec(
    "user_activity_v1",
    USER,
    (
        FeatureSpec("activity_7d", _F, 0.0, "log1p(engagements in the last 7 days)"),
        FeatureSpec("activity_30d", _F, 0.0, "log1p(engagements in the last 30 days)"),
        FeatureSpec("activity_all", _F, 0.0, "log1p(engagements ever)"),
        FeatureSpec("days_since_last", _F, log1p(NEVER_DAYS), "log1p(days since the latest engagement)"),
        FeatureSpec("years_since_last", _F, NEVER_DAYS / 365.0, "years since the latest engagement"),
        FeatureSpec("years_since_first", _F, NEVER_DAYS / 365.0, "years since the first engagement"),
        FeatureSpec("mean_rating", _F, NEUTRAL_RATING, "the user's mean explicit rating"),
    ),
    ttl_days=30,
    description="How much and how recently the user engages (training_job/features.py's user columns).",
)

USER_TASTE_V1 = ViewSpec(
    "user_taste_v1",
    USER,
    (
        FeatureSpec("top_genres", _SL, (), "the user's three strongest genres, strongest first"),
        FeatureSpec("top_genre_shares", _FL, (), "their share of the user's engagements, same order"),
    ),
    ttl_days=30,
    description="What the user likes: genre affinity from the movies engaged with.",
)

MOVIE_STATS_V1 = ViewSpec(
    "movie_stats_v1",
    MOVIE,
    (
        FeatureSpec("popularity_7d", _F, 0.0, "log1p(engagements in the last 7 days)"),
        FeatureSpec("popularity_30d", _F, 0.0, "log1p(engagements in the last 30 days)"),
        FeatureSpec("popularity_all", _F, 0.0, "log1p(engagements ever)"),
        FeatureSpec("days_since_first", _F, 0.0, "log1p(days since the first engagement): recency"),
        FeatureSpec("years_since_first", _F, 0.0, "years since the first engagement"),
        FeatureSpec("years_since_last", _F, 0.0, "years since the latest engagement"),
        FeatureSpec("mean_rating", _F, NEUTRAL_RATING, "mean rating shrunk toward the global mean"),
    ),
    ttl_days=30,
    description="Popularity and recency (training_job/features.py's movie columns).",
)

MOVIE_METADATA_V1 = ViewSpec(
    "movie_metadata_v1",
    MOVIE,
    (
        FeatureSpec("title", _S, "", "the catalogue title"),
        FeatureSpec("genres", _SL, (), "the catalogue genres"),
        FeatureSpec("year", _F, 0.0, "release year, 0 when unknown"),
    ),
    ttl_days=365,
    description="Catalogue metadata: with movie_stats_v1, what the models read of a movie (genre:*, year,"
    " year_unknown, popularity_*, ... in training_job/features.py), so a movie added after training is"
    " scored from features.",
)

VIEWS: tuple[ViewSpec, ...] = (USER_ACTIVITY_V1, USER_TASTE_V1, MOVIE_STATS_V1, MOVIE_METADATA_V1)
"""The views the feature pipeline computes, applies and materializes, and serving may read."""

USER_VIEWS = tuple(v for v in VIEWS if v.entity is USER)
MOVIE_VIEWS = tuple(v for v in VIEWS if v.entity is MOVIE)


def view(name: str) -> ViewSpec:
    for spec in VIEWS:
        if spec.name == name:
            return spec
    raise KeyError(f"no feature view named {name!r}; known: {[v.name for v in VIEWS]}")


def from_movie_metadata(name: str) -> bool:
    """Whether a model column (``movie_features.names``) comes from ``movie_metadata_v1``; every other
    one comes from ``movie_stats_v1``."""
    return name.startswith("genre:") or name in {"year", "year_unknown"}


def movie_model_features(
    names: list[str],
    stats: dict[str, FeatureValue],
    metadata: dict[str, FeatureValue],
    unknown_year: float = 0.0,
) -> list[float]:
    """A movie's raw feature vector in a model's column order (the artifact's ``movie_features.names``:
    ``genre:<g>``, ``year``, ``year_unknown``, ``popularity_*``, ...) from its online features.
    ``unknown_year`` is what the model's ``year`` column holds for a movie without one (training fills
    in the median year, the artifact's ``cold_movie_features``); the view stores 0."""
    genres = metadata.get("genres", ())
    genre_set = set(genres) if isinstance(genres, tuple) else set()
    year = metadata.get("year", 0.0)
    year_value = float(year) if isinstance(year, int | float) else 0.0
    values: list[float] = []
    for name in names:
        if name.startswith("genre:"):
            values.append(1.0 if name.removeprefix("genre:") in genre_set else 0.0)
        elif name == "year":
            values.append(year_value if year_value > 0 else unknown_year)
        elif name == "year_unknown":
            values.append(0.0 if year_value > 0 else 1.0)
        else:
            value = stats.get(name, 0.0)
            values.append(float(value) if isinstance(value, int | float) else 0.0)
    return values
