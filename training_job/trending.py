"""Real-time trending replayed offline: what the serve path's counters held when a user chose.

Serving blends a segment's batch popularity with the counts of the last ``TRENDING_BUCKETS`` buckets
of ``trending_bucket_seconds`` (``movierec.recommend.service``): per region when the segment is keyed
on region, globally otherwise (ingest counts both). Offline, a held-out pair at time ``t`` sees the
pairs in ``[t - window, t)`` of its trending group. The window defaults to the serving one, the bucket
in progress counted whole (3 hours by default): the most trending can hold at serving time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from movierec.config import RecommendSettings
from movierec.popularity import PopularityConfig
from movierec.recommend.service import TRENDING_BUCKETS
from training_job.data import IntArray, LongArray, Positives
from training_job.evaluate import (
    EvalCases,
    K,
    SegmentScorer,
    metrics_from_ranks,
    ranks_of_first,
    sampled_candidates,
    valid_negatives,
)

SERVING_WINDOW_SECONDS = float(
    TRENDING_BUCKETS * RecommendSettings.model_fields["trending_bucket_seconds"].default
)
GLOBAL_GROUP = 0
"""Trending group 0 counts everyone (the ``global`` counters); group r > 0 counts region r's users."""


class WindowCounts:
    """Event counts per (group, movie) and per group within a time window, for many queries at once.

    Sorted ``cell * stride + time`` keys: a count is the difference of two binary searches.
    """

    def __init__(self, group: IntArray, movie: IntArray, time: LongArray, n_movies: int) -> None:
        self.n_movies = n_movies
        self.origin = int(time.min()) if len(time) else 0
        self.stride = (int(time.max()) - self.origin + 2) if len(time) else 2
        offset = time.astype(np.int64) - self.origin
        self.cells = np.sort((group.astype(np.int64) * n_movies + movie) * self.stride + offset)
        self.groups = np.sort(group.astype(np.int64) * self.stride + offset)

    def window(
        self, group: IntArray, movies: npt.NDArray[np.int64], time: LongArray, seconds: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(counts of ``movies[i]`` in ``group[i]``, all events in ``group[i]``) in [time - seconds, time)."""
        # Clipping to the span of the data changes no count: there are no events outside it.
        hi = np.clip(time.astype(np.int64) - self.origin, 0, self.stride - 1)
        lo = np.clip(time.astype(np.int64) - int(seconds) - self.origin, 0, self.stride - 1)
        g = group.astype(np.int64)
        cell = (g[:, None] * self.n_movies + movies) * self.stride
        counts = np.searchsorted(self.cells, cell + hi[:, None]) - np.searchsorted(
            self.cells, cell + lo[:, None]
        )
        totals = np.searchsorted(self.groups, g * self.stride + hi) - np.searchsorted(
            self.groups, g * self.stride + lo
        )
        return counts.astype(np.float64), totals.astype(np.float64)


def trending_counts(pairs: Positives, user_region: IntArray | None) -> WindowCounts:
    """Every pair counts globally; with ``user_region`` (0 = none) also in its user's region."""
    group = np.zeros(len(pairs), dtype=np.int32)
    movie, time = pairs.movie, pairs.timestamp
    if user_region is not None:
        regional = user_region[pairs.user] > 0
        group = np.concatenate([group, user_region[pairs.user][regional]])
        movie = np.concatenate([movie, pairs.movie[regional]])
        time = np.concatenate([time, pairs.timestamp[regional]])
    return WindowCounts(group, movie, time, pairs.n_movies)


def top_n_totals(table: npt.NDArray[np.floating], n: int) -> npt.NDArray[np.float64]:
    """Per segment, the sum of its top-``n`` scores: what a published list's scores add up to."""
    n = min(n, table.shape[1])
    top = np.partition(table, table.shape[1] - n, axis=1)[:, table.shape[1] - n :]
    totals: npt.NDArray[np.float64] = top.sum(axis=1, dtype=np.float64)
    return np.where(totals > 0, totals, 1.0)


def blended_metrics(
    scorer: SegmentScorer,
    cases: EvalCases,
    time: LongArray,
    group: IntArray,
    counts: WindowCounts,
    weights: Sequence[float],
    window_seconds: float = SERVING_WINDOW_SECONDS,
    top_n: int = PopularityConfig.top_n,
) -> dict[float, dict[str, float]]:
    """Sampled HR/NDCG@10 per trending weight of ``movierec.popularity.blend_with_trending``,
    vectorised: ``(1 - w) * batch / batch_total + w * trending / trending_total``. The batch total is
    the segment's top-``top_n`` sum, as in a published list; movies beyond it keep their batch score
    (a published list would drop them) so weight 0 ranks exactly as the batch scorer does."""
    candidates = sampled_candidates(cases)
    valid = valid_negatives(cases)
    segment = scorer.user_segment[cases.user]
    batch = scorer.table[segment[:, None], candidates] / top_n_totals(scorer.table, top_n)[segment][:, None]
    trend, total = counts.window(group, candidates, time, window_seconds)
    trend /= np.maximum(total, 1.0)[:, None]
    return {
        float(w): metrics_from_ranks(ranks_of_first((1 - w) * batch + w * trend, valid), K) for w in weights
    }


def choose_weight(by_weight: Mapping[float, Mapping[str, float]], min_gain: float) -> float:
    """The weight with the best validation NDCG@10, unless it beats weight 0 by less than ``min_gain``
    (relative): trending that carries no signal only adds noise, so it is left out."""
    if not by_weight:
        return 0.0
    ndcg = {w: m.get(f"ndcg@{K}", 0.0) for w, m in by_weight.items()}
    best = max(sorted(ndcg), key=lambda w: ndcg[w])  # sorted: the smallest of equals wins
    base = ndcg.get(0.0, 0.0)
    return best if ndcg[best] > base * (1 + min_gain) else 0.0
