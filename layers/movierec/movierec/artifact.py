"""The model artifact: its file format and its numpy scorer. Numpy only: this ships to Lambda.

File format (``FORMAT_VERSION`` 1): one uncompressed zip (``np.load`` opens it as an ``.npz``) holding
``metadata.json`` (id maps, feature normalisation, metrics, parameters, data cut-off, code version)
and one ``.npy`` per weight array named in ``Weights``. ``save``/``load`` work on bytes.

The model is NeuMF over ID embeddings plus feature projections (see ``training_job/model.py``).
Every per-entity part is precomputed at training time, so scoring one candidate is:

    h0    = relu(user_mlp[u] + item_mlp[i])          # the MLP's first layer, split by side
    h     = relu(h @ W_k + b_k) for each hidden layer
    logit = (user_gmf[u] * out_gmf) . item_gmf[i] + h . out_mlp + out_bias

Retrieval ranks items by the GMF term plus a per-movie bias (the MLP term's average over users): a
dot product, so it can run over the whole catalogue (or an ANN index) before NeuMF re-ranks.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
SEQUENCE_FORMAT_VERSION = 2  # the sequence model (movierec.sequence): no per-user weights
METADATA_MEMBER = "metadata.json"

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


class Weights:
    """Array names inside the artifact. Hidden layers are ``hidden_w{k}`` (out, in) / ``hidden_b{k}``."""

    USER_GMF = "user_gmf"  # (users, factors): GMF user vectors (ID embedding + feature projection)
    USER_MLP = "user_mlp"  # (users, h0): the user's share of the MLP's first layer
    ITEM_GMF = "item_gmf"  # (movies, factors)
    ITEM_MLP = "item_mlp"  # (movies, h0): the movie's share of the first layer, bias included
    OUT_GMF = "out_gmf"  # (factors,)
    OUT_MLP = "out_mlp"  # (h_last,)
    OUT_BIAS = "out_bias"  # (1,)
    # (movies,): the MLP term's average over users, so retrieval (GMF dot product + this, i.e. a dot
    # product of [user, 1] and [movie, bias]) also sees what the MLP learned about the movie alone.
    RETRIEVAL_BIAS = "retrieval_bias"
    FOLD_IN = "fold_in"  # (factors + h0 + 1, factors + h0): mean recent item vectors -> user vector
    # Cold movies: a movie's vectors from its (raw) features alone, with no ID embedding.
    ITEM_GMF_PROJ = "item_gmf_proj"  # (factors, movie features)
    ITEM_MLP_PROJ = "item_mlp_proj"  # (h0, movie features)
    ITEM_MLP_BIAS = "item_mlp_bias"  # (h0,)
    # (movies, movie features): the normalised features ITEM_GMF/ITEM_MLP were built with, so serving
    # can swap in a movie's fresh online features (``item_vectors``). Optional: older artifacts lack it.
    ITEM_FEATURES = "item_features"

    @staticmethod
    def hidden_w(k: int) -> str:
        return f"hidden_w{k}"

    @staticmethod
    def hidden_b(k: int) -> str:
        return f"hidden_b{k}"


@dataclass(frozen=True)
class FeatureNormalisation:
    """``normalised = (raw - mean) / std``, column by column, as the model saw them."""

    names: list[str]
    mean: list[float]
    std: list[float]

    def apply(self, raw: npt.NDArray[np.floating[Any]]) -> FloatArray:
        out: FloatArray = ((raw - np.asarray(self.mean)) / np.asarray(self.std)).astype(np.float32)
        return out


@dataclass(frozen=True)
class ArtifactMetadata:
    model_version: str
    created_at: str  # ISO 8601, UTC
    data_cutoff: int  # epoch seconds, exclusive: the model saw only interactions before it
    code_version: str
    user_ids: list[str]  # index -> external user id
    movie_ids: list[int]  # index -> external movie id
    user_features: FeatureNormalisation
    movie_features: FeatureNormalisation
    cold_movie_features: list[float]  # raw movie features of a movie with no interactions yet
    factors: int
    mlp_layers: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ArtifactMetadata:
        raw = json.loads(data)
        version = raw.get("format_version")
        if version == SEQUENCE_FORMAT_VERSION:
            raise ValueError(
                f"artifact format_version {version} is the sequence model: load it with"
                " movierec.sequence.load (this loader reads the ID-based NeuMF,"
                f" format_version {FORMAT_VERSION})"
            )
        if version != FORMAT_VERSION:
            raise ValueError(
                f"unsupported artifact format_version {version!r} (this code reads {FORMAT_VERSION})"
            )
        raw["user_features"] = FeatureNormalisation(**raw["user_features"])
        raw["movie_features"] = FeatureNormalisation(**raw["movie_features"])
        return cls(**raw)


@dataclass(frozen=True)
class UserVector:
    """What the scorer needs of a user: a known user's row, or a folded-in unknown user."""

    gmf: FloatArray  # (factors,)
    mlp: FloatArray  # (h0,)


@dataclass(frozen=True)
class ItemVectors:
    """Movies' (gmf, mlp) vectors for one scoring call, one row per movie."""

    gmf: FloatArray  # (movies, factors)
    mlp: FloatArray  # (movies, h0)


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = (0.5 * (np.tanh(0.5 * x) + 1.0)).astype(np.float32)
    return out


class ModelArtifact:
    """A loaded artifact: id maps and a numpy NeuMF scorer. Build once per container, reuse."""

    def __init__(self, weights: Mapping[str, npt.NDArray[Any]], metadata: ArtifactMetadata) -> None:
        self.metadata = metadata
        self.weights = {name: np.asarray(array) for name, array in weights.items()}
        f32 = np.float32

        def take(name: str) -> FloatArray:
            return np.ascontiguousarray(self.weights[name], dtype=f32)

        self.user_gmf = take(Weights.USER_GMF)
        self.user_mlp = take(Weights.USER_MLP)
        self.item_gmf = take(Weights.ITEM_GMF)
        self.item_mlp = take(Weights.ITEM_MLP)
        self.out_gmf = take(Weights.OUT_GMF)
        self.out_mlp = take(Weights.OUT_MLP)
        self.out_bias = float(take(Weights.OUT_BIAS).reshape(-1)[0])
        # Stored (out, in) like torch; laid out (in, out) so scoring is ``h @ w``.
        self.hidden = [
            (np.ascontiguousarray(take(Weights.hidden_w(k)).T), take(Weights.hidden_b(k)))
            for k in range(len(metadata.mlp_layers) - 1)
        ]
        self.item_features = take(Weights.ITEM_FEATURES) if Weights.ITEM_FEATURES in self.weights else None
        # (in, out), for swapping a movie's features in at serving time (``item_vectors``).
        self._item_gmf_proj = np.ascontiguousarray(take(Weights.ITEM_GMF_PROJ).T)
        self._item_mlp_proj = np.ascontiguousarray(take(Weights.ITEM_MLP_PROJ).T)
        self.fold_in_weights = take(Weights.FOLD_IN)
        self.retrieval_bias = take(Weights.RETRIEVAL_BIAS)
        # Folded into the user side once, so a candidate's GMF term is one dot product.
        self.user_gmf_weighted = self.user_gmf * self.out_gmf
        self._item_unit = unit_rows(self.item_gmf * np.sqrt(np.abs(self.out_gmf)))
        self.movie_ids: npt.NDArray[np.int64] = np.asarray(metadata.movie_ids, dtype=np.int64)
        self._movie_index = {movie_id: index for index, movie_id in enumerate(metadata.movie_ids)}
        self._user_index = {user_id: index for index, user_id in enumerate(metadata.user_ids)}
        self._check_shapes()

    def _check_shapes(self) -> None:
        meta = self.metadata
        n_users, n_movies = len(meta.user_ids), len(meta.movie_ids)
        h0 = meta.mlp_layers[0]
        expected = {
            Weights.USER_GMF: (n_users, meta.factors),
            Weights.USER_MLP: (n_users, h0),
            Weights.ITEM_GMF: (n_movies, meta.factors),
            Weights.ITEM_MLP: (n_movies, h0),
            Weights.OUT_MLP: (meta.mlp_layers[-1],),
            Weights.RETRIEVAL_BIAS: (n_movies,),
            Weights.FOLD_IN: (meta.factors + h0 + 1, meta.factors + h0),
        }
        if self.item_features is not None:
            expected[Weights.ITEM_FEATURES] = (n_movies, len(meta.movie_features.names))
        for name, shape in expected.items():
            if self.weights[name].shape != shape:
                raise ValueError(
                    f"artifact weight {name} has shape {self.weights[name].shape}, expected {shape}"
                )

    # ---- id maps ------------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.metadata.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    def user_index(self, user_id: str) -> int | None:
        return self._user_index.get(user_id)

    def movie_index(self, movie_id: int) -> int | None:
        return self._movie_index.get(int(movie_id))

    def movie_indexes(self, movie_ids: Iterable[int]) -> IndexArray:
        """Indexes of the known movies among ``movie_ids``, in order; unknown ids are skipped."""
        found = (self._movie_index.get(int(m)) for m in movie_ids)
        return np.fromiter((i for i in found if i is not None), dtype=np.int64)

    # ---- users ----------------------------------------------------------------------------------------
    def user_vector(self, user: int | UserVector) -> UserVector:
        if isinstance(user, UserVector):
            return user
        return UserVector(self.user_gmf[user], self.user_mlp[user])

    def fold_in(self, recent_movie_ids: Sequence[int]) -> UserVector | None:
        """An unknown user from their recent movies: a linear map of the mean of those movies'
        vectors, fitted at training time on known users. None when no recent movie is known."""
        indexes = self.movie_indexes(recent_movie_ids)
        if len(indexes) == 0:
            return None
        mean = np.concatenate([self.item_gmf[indexes].mean(axis=0), self.item_mlp[indexes].mean(axis=0)])
        return self.fold_in_means(mean)

    # ---- scoring ----------------------------------------------------------------------------------------
    def _mlp(self, h: FloatArray) -> FloatArray:
        np.maximum(h, 0.0, out=h)
        for w, b in self.hidden:
            h = h @ w
            h += b
            np.maximum(h, 0.0, out=h)
        out: FloatArray = h @ self.out_mlp
        return out

    def item_vectors(
        self, movie_indexes: npt.NDArray[np.integer[Any]], features: FloatArray | None = None
    ) -> ItemVectors:
        """The (gmf, mlp) vectors of ``movie_indexes``; with ``features`` (their normalised features,
        one row each), as the model computes them from those features instead of the training-time
        ones. A movie's vector is linear in its features (ID embedding + projection), so swapping them
        is ``vector + (new - old) @ projection.T``."""
        movies = np.asarray(movie_indexes, dtype=np.int64)
        gmf, mlp = self.item_gmf[movies], self.item_mlp[movies]  # fancy indexing copies
        if features is None or self.item_features is None:
            return ItemVectors(gmf, mlp)
        delta = np.asarray(features, dtype=np.float32) - self.item_features[movies]
        gmf += delta @ self._item_gmf_proj
        mlp += delta @ self._item_mlp_proj
        return ItemVectors(gmf, mlp)

    def logits(
        self,
        user: int | UserVector,
        movie_indexes: npt.NDArray[np.integer[Any]],
        features: FloatArray | None = None,
    ) -> FloatArray:
        vector = self.user_vector(user)
        items = self.item_vectors(movie_indexes, features)
        h = items.mlp + vector.mlp
        gmf = items.gmf @ (vector.gmf * self.out_gmf)
        return (gmf + self._mlp(h) + self.out_bias).astype(np.float32)

    def score(
        self,
        user: int | UserVector,
        movie_indexes: npt.NDArray[np.integer[Any]],
        features: FloatArray | None = None,
    ) -> FloatArray:
        """Probability-like scores in (0, 1) for one user and a vector of movie indexes; ``features``:
        the movies' current normalised features (``item_vectors``), else the training-time ones."""
        return _sigmoid(self.logits(user, movie_indexes, features))

    def logits_many(
        self, users: npt.NDArray[np.integer[Any]] | UserVector, movie_indexes: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """Batch form: ``movie_indexes`` is (users, candidates); returns the same shape. ``users`` is an
        index array, or a ``UserVector`` whose fields are (users, width) matrices."""
        movies = np.asarray(movie_indexes, dtype=np.int64)
        if isinstance(users, UserVector):
            user_gmf, user_mlp = users.gmf * self.out_gmf, users.mlp
        else:
            rows = np.asarray(users, dtype=np.int64)
            user_gmf, user_mlp = self.user_gmf_weighted[rows], self.user_mlp[rows]
        batch, width = movies.shape
        h = (self.item_mlp[movies] + user_mlp[:, None, :]).reshape(batch * width, -1)
        gmf: FloatArray = np.einsum("bmd,bd->bm", self.item_gmf[movies], user_gmf)
        return (gmf + self._mlp(h).reshape(batch, width) + self.out_bias).astype(np.float32)

    def fold_in_means(self, means: FloatArray) -> UserVector:
        """User vectors from mean recent-movie vectors ([gmf | mlp] per row, or one row)."""
        factors = self.metadata.factors
        ones = np.ones((*means.shape[:-1], 1), dtype=np.float32)
        vector = np.concatenate([means, ones], axis=-1).astype(np.float32) @ self.fold_in_weights
        return UserVector(
            np.ascontiguousarray(vector[..., :factors]), np.ascontiguousarray(vector[..., factors:])
        )

    def retrieval_scores(self, user_indexes: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Batch retrieval scores, (users, movies): what ``retrieve`` ranks by, for known users."""
        rows = np.asarray(user_indexes, dtype=np.int64)
        scores = self.user_gmf_weighted[rows] @ self.item_gmf.T
        scores += self.retrieval_bias
        return scores.astype(np.float32, copy=False)

    def retrieve(
        self,
        user: int | UserVector,
        n: int,
        exclude: npt.NDArray[np.integer[Any]] | Sequence[int] | None = None,
    ) -> IndexArray:
        """Top-``n`` movie indexes by the retrieval dot product, best first, skipping ``exclude``."""
        vector = self.user_vector(user)
        scores = self.item_gmf @ (vector.gmf * self.out_gmf) + self.retrieval_bias
        if exclude is not None and len(exclude):
            scores[np.asarray(exclude, dtype=np.int64)] = -np.inf
        return top_indexes(scores, n)

    def similar(self, movie_id: int, k: int) -> tuple[npt.NDArray[np.int64], FloatArray]:
        """The ``k`` movies closest to ``movie_id`` (cosine in the GMF space): (movie ids, similarity).
        Empty arrays for an unknown movie."""
        index = self.movie_index(movie_id)
        if index is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        best, similarity = nearest(self._item_unit, index, k)
        return self.movie_ids[best], similarity

    def cold_movie_scores(
        self, user: int | UserVector, genres: Sequence[Sequence[str]], years: Sequence[int]
    ) -> FloatArray:
        """Scores for movies the model has never seen (no ID embedding), from genres and year alone."""
        norm = self.metadata.movie_features
        column = {name: j for j, name in enumerate(norm.names)}
        raw = np.tile(np.asarray(self.metadata.cold_movie_features, dtype=np.float64), (len(genres), 1))
        for row, (movie_genres, year) in enumerate(zip(genres, years, strict=True)):
            for genre in movie_genres:
                if (j := column.get(f"genre:{genre}")) is not None:
                    raw[row, j] = 1.0
            if year and "year" in column:
                raw[row, column["year"]] = year
                if "year_unknown" in column:
                    raw[row, column["year_unknown"]] = 0.0
        x = norm.apply(raw)
        vector = self.user_vector(user)
        item_gmf = x @ self.weights[Weights.ITEM_GMF_PROJ].T
        h = (
            x @ self.weights[Weights.ITEM_MLP_PROJ].T + self.weights[Weights.ITEM_MLP_BIAS] + vector.mlp
        ).astype(np.float32)
        logit = item_gmf @ (vector.gmf * self.out_gmf) + self._mlp(h) + self.out_bias
        return _sigmoid(logit.astype(np.float32))

    def with_metadata(self, **changes: Any) -> ModelArtifact:
        return ModelArtifact(self.weights, replace(self.metadata, **changes))


def top_indexes(scores: npt.NDArray[np.floating[Any]], n: int) -> IndexArray:
    """Indexes of the ``n`` largest finite scores, best first (ties: lower index first)."""
    finite = int(np.isfinite(scores).sum())
    n = min(n, finite)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    part = np.argpartition(-scores, n - 1)[:n] if n < len(scores) else np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))
    return part[order].astype(np.int64)


def write_archive(metadata_json: bytes, weights: Mapping[str, npt.NDArray[Any]]) -> bytes:
    """The container every artifact format shares: a zip of ``metadata.json`` and one ``.npy`` per
    weight, stored uncompressed so a reader can map arrays without inflating them."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA_MEMBER, metadata_json)
        for name, array in sorted(weights.items()):
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def read_archive(data: bytes) -> tuple[bytes, dict[str, npt.NDArray[Any]]]:
    """``write_archive`` undone: the metadata's JSON bytes and the weights by name."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        metadata_json = archive.read(METADATA_MEMBER)
        weights: dict[str, npt.NDArray[Any]] = {}
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as handle:
                    weights[member.removesuffix(".npy")] = np.lib.format.read_array(
                        handle, allow_pickle=False
                    )
    return metadata_json, weights


def unit_rows(vectors: FloatArray) -> FloatArray:
    """Each row scaled to length 1 (a zero row stays zero), so cosine similarity is a dot product."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: FloatArray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return out


def nearest(unit: FloatArray, index: int, k: int) -> tuple[IndexArray, FloatArray]:
    """The ``k`` rows of ``unit`` (``unit_rows``) closest to row ``index`` by cosine, itself excluded:
    (row indexes best first, their similarity)."""
    similarity = unit @ unit[index]
    similarity[index] = -np.inf
    best = top_indexes(similarity, k)
    return best, similarity[best].astype(np.float32)


def format_version(data: bytes) -> int:
    """An artifact's ``format_version``, from its metadata alone (no weight is read): which loader reads
    it (1: this module's ``load``, 2: ``movierec.sequence.load``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            raw = json.loads(archive.read(METADATA_MEMBER))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ValueError(f"not a model artifact: {error}") from error
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if not isinstance(version, int):
        raise ValueError(f"artifact metadata has no format_version: {version!r}")
    return version


def save(artifact: ModelArtifact) -> bytes:
    return write_archive(artifact.metadata.to_json(), artifact.weights)


def load(data: bytes) -> ModelArtifact:
    metadata_json, weights = read_archive(data)
    return ModelArtifact(weights, ArtifactMetadata.from_json(metadata_json))
