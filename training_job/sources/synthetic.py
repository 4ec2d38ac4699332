"""A seeded synthetic catalogue and audience: the embedded default data for ``make demo`` and tests.

The generative model (see docs/data.md):

* movies have 1-3 genres, a year, a Zipf-distributed base popularity and a quality bias; their taste
  vector is the mean of their genres' vectors plus noise, normalised to unit length;
* users belong to a region and have an age; their taste vector is their region's offset plus their
  age band's offset (``movierec.segments`` bands, zero unless ``age_taste`` > 0) plus a standard
  normal draw, so ``user . movie`` is roughly N(region and age effects, 1) and regions (and age bands)
  genuinely prefer different movies;
* a user with ``n`` events picks ``n`` distinct movies with probability proportional to
  ``popularity * exp(taste_weight * affinity)`` (Gumbel top-k: sampling without replacement);
* each pick becomes a WATCH (value = completion, higher when affinity is high) or a RATING
  (0.5-5 in halves, a linear function of affinity, biases and noise), at times in the user's active
  span, in time order.

Users are generated in blocks, each with its own random stream derived from (seed, block), and written
straight into preallocated columns, so 10M events cost their final 21 bytes each plus one block of
scratch space. The block size follows from the config, so the config alone fixes the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from movierec.data.dataset import Dataset, InteractionKind, Interactions, Movies, Users
from movierec.segments import AGE_BAND_STARTS

REGIONS = ("us-east", "us-west", "eu-west", "eu-north", "latam", "apac", "india", "africa")
"""Region names, used in order; configurations with more regions continue as region-9, region-10..."""

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# How common each genre is (drama and comedy dominate, as in MovieLens).
_GENRE_WEIGHTS = np.array([8, 5, 2, 2, 10, 5, 2, 14, 3, 1, 4, 1, 2, 5, 3, 6, 1, 1], dtype=np.float64)

_ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Midnight", "Lost", "Electric", "Frozen",
    "Wild", "Secret", "Burning", "Distant", "Final", "Hollow", "Iron", "Little", "Northern", "Quiet",
)  # fmt: skip
_NOUNS = (
    "Harbor", "Empire", "Garden", "Signal", "River", "Kingdom", "Witness", "Summer", "Machine", "Horizon",
    "Orchard", "Frontier", "Lantern", "Voyage", "Circus", "Letter", "Mountain", "Station", "Promise",
    "Island",
)  # fmt: skip

_CELLS_PER_BLOCK = 1 << 21
"""Users are processed in blocks of about this many user x movie cells (8 MiB per float32 matrix)."""


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 7
    n_users: int = 2_000
    n_movies: int = 1_000
    n_events: int = 100_000
    n_regions: int = 5
    n_factors: int = 8
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    end: datetime = datetime(2024, 7, 1, tzinfo=UTC)
    watch_share: float = 0.5  # the fraction of events that are WATCH (the rest are RATING)
    popularity_exponent: float = 1.0  # Zipf exponent of base popularity: larger is more skewed
    region_taste: float = 1.0  # spread of region taste offsets, relative to individual taste (1.0)
    age_taste: float = 0.0  # spread of age-band taste offsets; 0 keeps every earlier dataset identical
    taste_weight: float = 1.0  # how much affinity, against popularity, steers what users pick
    rating_noise: float = 0.6  # standard deviation of rating noise, in stars

    def __post_init__(self) -> None:
        for name in ("n_users", "n_movies", "n_events", "n_regions", "n_factors"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.n_regions > self.n_users:
            raise ValueError("n_regions cannot exceed n_users")
        if self.n_events > self.n_users * self.n_movies:
            raise ValueError("n_events cannot exceed n_users * n_movies (a user picks each movie once)")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end must carry a timezone")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if not 0.0 <= self.watch_share <= 1.0:
            raise ValueError("watch_share must be between 0 and 1")
        for name in ("popularity_exponent", "region_taste", "age_taste", "taste_weight", "rating_noise"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def name(self) -> str:
        """The dataset name; it seeds event ids, so two different configurations never share one."""
        base = (
            f"synthetic(seed={self.seed}, users={self.n_users}, movies={self.n_movies}, "
            f"events={self.n_events}"
        )
        main = {"seed", "n_users", "n_movies", "n_events"}
        default = SyntheticConfig()
        rest = [
            f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
            if f.name not in main and getattr(self, f.name) != getattr(default, f.name)
        ]
        if not rest:
            return base + ")"
        digest = hashlib.sha256(";".join(rest).encode()).hexdigest()[:8]
        return f"{base}, variant={digest})"


@dataclass(frozen=True)
class SyntheticTruth:
    """The latent variables behind a generated dataset, for tests and for judging models."""

    user_factors: npt.NDArray[np.float64]  # (n_users, n_factors)
    movie_factors: npt.NDArray[np.float64]  # (n_movies, n_factors), unit rows
    region_offsets: npt.NDArray[np.float64]  # (n_regions, n_factors)
    user_region: npt.NDArray[np.int32]  # region index of each user
    age_offsets: npt.NDArray[np.float64]  # (len(segments.AGE_BAND_STARTS), n_factors)
    user_age_band: npt.NDArray[np.int32]  # age band index of each user
    user_bias: npt.NDArray[np.float64]
    movie_bias: npt.NDArray[np.float64]  # quality: raises ratings and, a little, popularity
    log_popularity: npt.NDArray[np.float64]

    def affinity(
        self, users: npt.NDArray[np.int32], movies: npt.NDArray[np.int32]
    ) -> npt.NDArray[np.float64]:
        """Latent taste match ``user . movie`` for aligned arrays of user and movie rows."""
        result: npt.NDArray[np.float64] = np.einsum(
            "ij,ij->i", self.user_factors[users], self.movie_factors[movies]
        )
        return result


def region_names(n_regions: int) -> list[str]:
    return [REGIONS[i] if i < len(REGIONS) else f"region-{i + 1}" for i in range(n_regions)]


def generate(config: SyntheticConfig) -> Dataset:
    """The synthetic dataset for ``config``; the same config always yields identical arrays."""
    return generate_with_truth(config)[0]


def generate_with_truth(config: SyntheticConfig) -> tuple[Dataset, SyntheticTruth]:
    # Independent streams for the catalogue (0), the audience (1), each block of events (2, block) and
    # the age-band offsets (3, added later: a stream of its own leaves the others' draws unchanged).
    movies, movie_factors, movie_bias, log_popularity = _catalogue(config, _stream(config.seed, 0))
    audience = _audience(config, _stream(config.seed, 1), _stream(config.seed, 3))
    users, user_region, region_offsets, age_offsets, user_age_band, user_factors, user_bias, counts = audience
    truth = SyntheticTruth(
        user_factors=user_factors,
        movie_factors=movie_factors,
        region_offsets=region_offsets,
        user_region=user_region,
        age_offsets=age_offsets,
        user_age_band=user_age_band,
        user_bias=user_bias,
        movie_bias=movie_bias,
        log_popularity=log_popularity,
    )
    interactions = _interactions(config, truth, counts)
    return Dataset(name=config.name, users=users, movies=movies, interactions=interactions), truth


def _stream(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _catalogue(
    config: SyntheticConfig, rng: np.random.Generator
) -> tuple[Movies, npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    n, k = config.n_movies, config.n_factors
    # 1-3 genres per movie, drawn without replacement by weight (Gumbel top-k over the 18 genres).
    n_genres = 1 + rng.binomial(2, 0.4, size=n)
    keys = np.log(_GENRE_WEIGHTS)[None, :] + rng.gumbel(size=(n, len(GENRES)))
    ranked = np.argsort(-keys, axis=1)
    member = np.zeros((n, len(GENRES)), dtype=bool)
    chosen = np.arange(len(GENRES))[None, :] < n_genres[:, None]
    np.put_along_axis(member, ranked, chosen, axis=1)
    genre_vectors = rng.standard_normal((len(GENRES), k))
    factors = (member @ genre_vectors) / n_genres[:, None] + 0.7 * rng.standard_normal((n, k))
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)

    quality = 0.4 * rng.standard_normal(n)
    # Zipf-like base popularity over a random ranking, nudged by quality.
    rank = rng.permutation(n)
    log_popularity = -config.popularity_exponent * np.log1p(rank) + 0.5 * quality

    years = np.clip(2024 - np.floor(rng.exponential(15.0, size=n)), 1920, 2024).astype(np.int16)
    adjective = rng.integers(len(_ADJECTIVES), size=n)
    noun = rng.integers(len(_NOUNS), size=n)
    genre_names = [tuple(GENRES[g] for g in np.flatnonzero(row)) for row in member]
    titles = [
        f"The {_ADJECTIVES[a]} {_NOUNS[b]} ({y})"
        for a, b, y in zip(adjective.tolist(), noun.tolist(), years.tolist(), strict=True)
    ]
    movies = Movies(ids=np.arange(1, n + 1, dtype=np.int64), titles=titles, genres=genre_names, year=years)
    return movies, factors, quality, log_popularity


def _audience(
    config: SyntheticConfig, rng: np.random.Generator, age_rng: np.random.Generator
) -> tuple[
    Users,
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int32],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.int64],
]:
    n, k = config.n_users, config.n_factors
    names = region_names(config.n_regions)
    # Uneven region sizes, but every region has at least one user.
    shares = rng.dirichlet(np.full(config.n_regions, 3.0))
    region = np.concatenate(
        [np.arange(config.n_regions), rng.choice(config.n_regions, size=n - config.n_regions, p=shares)]
    )
    region = rng.permutation(region).astype(np.int32)
    offsets = config.region_taste * rng.standard_normal((config.n_regions, k))
    factors = offsets[region] + rng.standard_normal((n, k))
    bias = 0.3 * rng.standard_normal(n)
    gender = np.where(rng.random(n) < 0.5, "F", "M").tolist()
    age = np.clip(np.round(16 + rng.gamma(4.0, 5.0, size=n)), 13, 90).astype(np.int16)
    # Age drawn after taste (the original draw order): its offset is added now. Adding 0.0 when
    # age_taste is 0 is exact, so such datasets stay bit-identical.
    band = np.searchsorted(AGE_BAND_STARTS, age, side="right").astype(np.int32) - 1
    age_offsets = config.age_taste * age_rng.standard_normal((len(AGE_BAND_STARTS), k))
    factors = factors + age_offsets[band]
    activity = rng.lognormal(0.0, 1.0, size=n)
    counts = _event_counts(config, activity, rng)
    users = Users(
        ids=[str(i) for i in range(1, n + 1)],
        region=[names[r] for r in region.tolist()],
        gender=gender,
        age=age,
    )
    return users, region, offsets, age_offsets, band, factors, bias, counts


def _event_counts(
    config: SyntheticConfig, activity: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.int64]:
    """Events per user: exactly n_events in total, skewed by activity, at most n_movies each."""
    n = config.n_users
    counts = np.zeros(n, dtype=np.int64)
    if config.n_events >= n:
        counts += 1  # everyone has some history
    remaining = config.n_events - int(counts.sum())
    while remaining > 0:
        room = config.n_movies - counts
        weights = np.where(room > 0, activity, 0.0)
        extra = rng.multinomial(remaining, weights / weights.sum())
        counts += np.minimum(extra, room)
        remaining = config.n_events - int(counts.sum())
    return counts


def _interactions(
    config: SyntheticConfig, truth: SyntheticTruth, counts: npt.NDArray[np.int64]
) -> Interactions:
    total = int(counts.sum())
    user_col = np.empty(total, dtype=np.int32)
    movie_col = np.empty(total, dtype=np.int32)
    value_col = np.empty(total, dtype=np.float32)
    time_col = np.empty(total, dtype=np.int64)
    kind_col = np.empty(total, dtype=np.int8)

    start, end = int(config.start.timestamp()), int(config.end.timestamp())
    ends = np.concatenate([[0], np.cumsum(counts)])
    block = int(np.clip(_CELLS_PER_BLOCK // config.n_movies, 1, 1024))
    for number, first in enumerate(range(0, config.n_users, block)):
        rows = np.arange(first, min(first + block, config.n_users), dtype=np.int32)
        rng = _stream(config.seed, 2, number)
        users, movies = _picks(config, truth, rows, counts[rows], rng)
        affinity = truth.affinity(users, movies)
        n = len(users)

        watch = rng.random(n) < config.watch_share
        stars = (
            3.0
            + 0.6 * (affinity + truth.movie_bias[movies] + truth.user_bias[users])
            + config.rating_noise * rng.standard_normal(n)
        )
        rating = np.clip(np.round(stars * 2) / 2, 0.5, 5.0)
        completion = 1 / (
            1 + np.exp(-(1.5 * (affinity + truth.movie_bias[movies]) + 0.5 + rng.standard_normal(n)))
        )
        completion = np.round(completion, 2)

        # Each user is active from a sign-up time to the end; their events fall in that span, in order.
        signup = start + (rng.random(len(rows)) * 0.8 * (end - start)).astype(np.int64)
        span_start = signup[users - first]
        times = span_start + (rng.random(n) * (end - span_start)).astype(np.int64)
        order = np.lexsort((times, users))

        out = slice(int(ends[rows[0]]), int(ends[rows[-1] + 1]))
        user_col[out] = users[order]
        movie_col[out] = movies[order]
        value_col[out] = np.where(watch, completion, rating)[order]
        time_col[out] = times[order]
        kind_col[out] = np.where(watch, InteractionKind.WATCH, InteractionKind.RATING)[order]
    return Interactions(user=user_col, movie=movie_col, value=value_col, timestamp=time_col, kind=kind_col)


def _picks(
    config: SyntheticConfig,
    truth: SyntheticTruth,
    rows: npt.NDArray[np.int32],
    counts: npt.NDArray[np.int64],
    rng: np.random.Generator,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Distinct movies per user, drawn with weight popularity * exp(taste_weight * affinity)."""
    top = int(counts.max()) if len(counts) else 0
    if top == 0:
        return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    # Elementwise sums rather than a BLAS matmul: identical bits whatever the thread count.
    users = (config.taste_weight * truth.user_factors[rows]).astype(np.float32)
    movies = truth.movie_factors.astype(np.float32)
    logits = np.repeat(truth.log_popularity[None, :].astype(np.float32), len(rows), axis=0)
    for factor in range(movies.shape[1]):
        logits += users[:, factor, None] * movies[None, :, factor]
    # Exponential race (Gumbel top-k in disguise): the k smallest of Exp(1) / weight are a weighted
    # draw of k distinct movies, in draw order. float32 halves the scratch memory and the time.
    keys = rng.standard_exponential(size=logits.shape, dtype=np.float32)
    keys *= np.exp(-logits)
    n_movies = keys.shape[1]
    if top < n_movies:
        candidates = np.argpartition(keys, top - 1, axis=1)[:, :top]
    else:
        candidates = np.broadcast_to(np.arange(n_movies), keys.shape)
    ranked = np.take_along_axis(
        candidates, np.argsort(np.take_along_axis(keys, candidates, axis=1), axis=1), axis=1
    )
    keep = np.arange(ranked.shape[1])[None, :] < counts[:, None]
    picked_users = np.broadcast_to(rows[:, None], ranked.shape)[keep]
    return picked_users.astype(np.int32), ranked[keep].astype(np.int32)


__all__ = [
    "GENRES",
    "REGIONS",
    "SyntheticConfig",
    "SyntheticTruth",
    "generate",
    "generate_with_truth",
    "region_names",
]
