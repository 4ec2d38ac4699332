"""Popularity: the cold-start recommender and the last line of every fallback chain.

Batch popularity is a time-decayed engagement count per movie, per segment. A segment's counts are
shrunk toward global popularity (an empirical-Bayes blend), so a small region with a handful of events
does not serve noise: ``score_s(m) = (n_s(m) + strength * share_global(m)) / (N_s + strength)``.

At request time batch popularity is blended with real-time trending counts from Redis, so "popular in
your region now" moves between training runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from movierec import keys

DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class PopularityConfig:
    half_life_days: float = 30.0
    shrinkage_strength: float = 50.0
    """Pseudo-events of global popularity mixed into each segment's counts."""
    min_segment_events: int = 20
    """Segments with fewer (decayed) events are not published; their users get global popularity."""
    top_n: int = 200


@dataclass(frozen=True)
class RankedList:
    movie_indexes: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]


def decayed_weights(
    timestamps: npt.NDArray[np.int64], as_of: float, half_life_days: float
) -> npt.NDArray[np.float64]:
    age_days = np.maximum(0.0, (as_of - timestamps.astype(np.float64)) / DAY_SECONDS)
    weights: npt.NDArray[np.float64] = np.exp2(-age_days / half_life_days)
    return weights


def segment_popularity(
    movie: npt.NDArray[np.int32],
    timestamp: npt.NDArray[np.int64],
    segment_of_interaction: Sequence[str] | npt.NDArray[np.str_],
    n_movies: int,
    as_of: float,
    config: PopularityConfig = PopularityConfig(),
    exclude: npt.NDArray[np.bool_] | None = None,
) -> dict[str, RankedList]:
    """Top-N per segment plus ``global``. ``exclude`` masks movies that must never appear (retired)."""
    weights = decayed_weights(timestamp, as_of, config.half_life_days)
    global_counts = np.bincount(movie, weights=weights, minlength=n_movies).astype(np.float64)
    total = global_counts.sum()
    global_share = global_counts / total if total > 0 else global_counts
    result = {keys.GLOBAL_SEGMENT: _top(global_share, config.top_n, exclude)}

    segments = np.asarray(segment_of_interaction)
    for segment in np.unique(segments):
        if not segment:
            continue  # unknown segment: those users are served global popularity
        mask = segments == segment
        counts = np.bincount(movie[mask], weights=weights[mask], minlength=n_movies)
        if counts.sum() < config.min_segment_events:
            continue
        shrunk = (counts + config.shrinkage_strength * global_share) / (
            counts.sum() + config.shrinkage_strength
        )
        result[str(segment)] = _top(shrunk, config.top_n, exclude)
    return result


def _top(scores: npt.NDArray[np.float64], n: int, exclude: npt.NDArray[np.bool_] | None) -> RankedList:
    if exclude is not None:
        scores = np.where(exclude, -np.inf, scores)
    n = min(n, int(np.count_nonzero(np.isfinite(scores) & (scores > 0))))
    if n == 0:
        return RankedList(np.zeros(0, dtype=np.int64), np.zeros(0))
    top = np.argpartition(-scores, n - 1)[:n]
    order = top[np.lexsort((top, -scores[top]))]  # by score, ties by index for determinism
    return RankedList(order.astype(np.int64), scores[order])


def blend_with_trending(
    batch: Sequence[tuple[int, float]], trending: Mapping[int, float], trending_weight: float
) -> list[tuple[int, float]]:
    """Mix normalised batch scores with normalised real-time counts; movies only trending join in."""
    batch_total = sum(score for _, score in batch) or 1.0
    trending_total = sum(trending.values()) or 1.0
    blended: dict[int, float] = {m: (1 - trending_weight) * s / batch_total for m, s in batch}
    for movie_id, count in trending.items():
        blended[movie_id] = blended.get(movie_id, 0.0) + trending_weight * count / trending_total
    return sorted(blended.items(), key=lambda item: (-item[1], item[0]))
