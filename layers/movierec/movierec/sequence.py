"""The sequence model's artifact (format version 2) and its numpy forward. Numpy only: ships to Lambda.

The model (``training_job/sequence_model.py``) is NeuMF's ranking head over a user vector computed
from the user's ordered history, SASRec-style, instead of a per-user ID embedding:

    x_i   = item_gmf[m_i] * sqrt(d) + kind[k_i] + position[i] + gap[g_i]      # oldest first
    x     = blocks(x)       # pre-LN, causal multi-head attention + point-wise FFN, residuals
    z     = LN(x_last) + query_gap[bucket(now - t_last)] + profile_proj @ profile
    u_gmf = W_g z + b_g ;  u_mlp = W_m z + b_m
    logit = (u_gmf * out_gmf) . item_gmf[i] + MLP(relu(u_mlp + item_mlp[i])) . out_mlp + out_bias

Nothing in it is per user, so the artifact's size does not depend on how many users there are, and a
user's vector changes as soon as their history does. File format: the same zip of ``metadata.json``
plus one ``.npy`` per weight as format 1 (``movierec.artifact``), with ``format_version`` 2 and
``model`` ``"sequence_neumf"``; each loader refuses the other's artifacts with a message naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from movierec.artifact import (
    FORMAT_VERSION as ID_FORMAT_VERSION,
)
from movierec.artifact import (
    SEQUENCE_FORMAT_VERSION,
    FeatureNormalisation,
    read_archive,
    write_archive,
)
from movierec.sequence_encoding import EncodedHistories, encode_history, profile_vector

MODEL_NAME = "sequence_neumf"
LN_EPS = 1e-5  # torch.nn.LayerNorm's default

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.int64]


class SequenceWeights:
    """Array names inside a format-2 artifact. Torch layout: linear weights are (out, in)."""

    ITEM_GMF = "item_gmf"  # (movies, d): ID embedding + feature projection; tower input and GMF side
    ITEM_MLP = "item_mlp"  # (movies, h0): the movie's share of the MLP's first layer, bias included
    ITEM_GMF_PROJ = "item_gmf_proj"  # (d, movie features): a cold movie's vectors from features alone
    ITEM_MLP_PROJ = "item_mlp_proj"  # (h0, movie features)
    ITEM_MLP_BIAS = "item_mlp_bias"  # (h0,)
    KIND = "kind_emb"  # (KINDS, d)
    POSITION = "position_emb"  # (history length, d): the last row is the latest engagement
    GAP = "gap_emb"  # (GAP_BUCKETS, d)
    QUERY_GAP = "query_gap_emb"  # (GAP_BUCKETS, d)
    PROFILE = "profile_proj"  # (d, profile features)
    FINAL_LN_W, FINAL_LN_B = "final_ln_w", "final_ln_b"
    USER_GMF_W, USER_GMF_B = "user_gmf_w", "user_gmf_b"  # (d, d), (d,)
    USER_MLP_W, USER_MLP_B = "user_mlp_w", "user_mlp_b"  # (h0, d), (h0,)
    OUT_GMF, OUT_MLP, OUT_BIAS = "out_gmf", "out_mlp", "out_bias"
    BLOCK_PARTS: tuple[str, ...] = ("ln1_w", "ln1_b", "qkv_w", "qkv_b", "proj_w", "proj_b", "ln2_w", "ln2_b")
    BLOCK_PARTS += ("ffn1_w", "ffn1_b", "ffn2_w", "ffn2_b")

    @staticmethod
    def block(k: int, part: str) -> str:
        return f"block{k}_{part}"

    @staticmethod
    def hidden_w(k: int) -> str:
        return f"hidden_w{k}"

    @staticmethod
    def hidden_b(k: int) -> str:
        return f"hidden_b{k}"


@dataclass(frozen=True)
class SequenceMetadata:
    model_version: str
    created_at: str  # ISO 8601, UTC
    data_cutoff: int  # epoch seconds, exclusive
    code_version: str
    movie_ids: list[int]  # index -> external movie id; no user ids: the model has no per-user part
    movie_features: FeatureNormalisation
    cold_movie_features: list[float]  # raw features of a movie with no interactions yet
    profile_features: list[str]  # one-hot profile columns (segment names), see sequence_encoding
    dim: int
    heads: int
    blocks: int
    ffn_dim: int
    history_length: int
    mlp_layers: list[int]
    default_kind: int  # InteractionKind assumed when serving does not know an engagement's kind
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    model: str = MODEL_NAME
    format_version: int = SEQUENCE_FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, data: bytes) -> SequenceMetadata:
        raw = json.loads(data)
        version = raw.get("format_version")
        if version == ID_FORMAT_VERSION:
            raise ValueError(
                f"artifact format_version {version} is the ID-based NeuMF (movierec.artifact.load); the"
                f" sequence model needs format_version {SEQUENCE_FORMAT_VERSION}: retrain with the sequence"
                " job"
            )
        if version != SEQUENCE_FORMAT_VERSION or raw.get("model") != MODEL_NAME:
            raise ValueError(
                f"unsupported artifact format_version {version!r} / model {raw.get('model')!r} "
                f"(this code reads format_version {SEQUENCE_FORMAT_VERSION}, model {MODEL_NAME!r})"
            )
        raw["movie_features"] = FeatureNormalisation(**raw["movie_features"])
        return cls(**raw)


@dataclass(frozen=True)
class SequenceUserVector:
    """A user as the head sees them; fields are (width,) for one user or (users, width) for many."""

    gmf: FloatArray  # (d,)
    mlp: FloatArray  # (h0,)


def _layer_norm(x: FloatArray, weight: FloatArray, bias: FloatArray) -> FloatArray:
    mean = x.mean(axis=-1, keepdims=True)
    var = np.square(x - mean).mean(axis=-1, keepdims=True)
    out: FloatArray = (x - mean) / np.sqrt(var + LN_EPS) * weight + bias
    return out


def _sigmoid(x: FloatArray) -> FloatArray:
    out: FloatArray = (0.5 * (np.tanh(0.5 * x) + 1.0)).astype(np.float32)
    return out


class SequenceModel:
    """A loaded format-2 artifact: id map, user tower and head in numpy. Build once per container."""

    def __init__(self, weights: Mapping[str, npt.NDArray[Any]], metadata: SequenceMetadata) -> None:
        self.metadata = metadata
        self.weights = {name: np.ascontiguousarray(a, dtype=np.float32) for name, a in weights.items()}
        w, n = self.weights, SequenceWeights
        self.item_gmf, self.item_mlp = w[n.ITEM_GMF], w[n.ITEM_MLP]
        self.n_movies = len(self.item_gmf)
        # Padding is row n_movies, a zero vector, so a padded batch gathers without branches.
        self._item_input = np.vstack([self.item_gmf, np.zeros((1, metadata.dim), np.float32)])
        self._item_input *= np.float32(np.sqrt(metadata.dim))
        self.out_gmf, self.out_mlp = w[n.OUT_GMF], w[n.OUT_MLP]
        self.out_bias = float(w[n.OUT_BIAS].reshape(-1)[0])
        # Transposed once to (in, out) so every product below is ``x @ w``.
        self.hidden = [
            (np.ascontiguousarray(w[n.hidden_w(k)].T), w[n.hidden_b(k)])
            for k in range(len(metadata.mlp_layers) - 1)
        ]
        self.blocks = [
            {p: (np.ascontiguousarray(w[n.block(k, p)].T) if p.endswith("_w") and w[n.block(k, p)].ndim == 2
                 else w[n.block(k, p)]) for p in n.BLOCK_PARTS}
            for k in range(metadata.blocks)
        ]  # fmt: skip
        self.user_gmf_w, self.user_mlp_w = w[n.USER_GMF_W].T.copy(), w[n.USER_MLP_W].T.copy()
        self.profile_w = w[n.PROFILE].T.copy()
        self.movie_ids: IndexArray = np.asarray(metadata.movie_ids, dtype=np.int64)
        self._movie_index = {movie_id: index for index, movie_id in enumerate(metadata.movie_ids)}
        self._check_shapes()

    def _check_shapes(self) -> None:
        meta, w, n = self.metadata, self.weights, SequenceWeights
        expected = {
            n.ITEM_GMF: (len(meta.movie_ids), meta.dim),
            n.ITEM_MLP: (len(meta.movie_ids), meta.mlp_layers[0]),
            n.POSITION: (meta.history_length, meta.dim),
            n.PROFILE: (meta.dim, len(meta.profile_features)),
            n.OUT_MLP: (meta.mlp_layers[-1],),
        }
        for name, shape in expected.items():
            if w[name].shape != shape:
                raise ValueError(f"artifact weight {name} has shape {w[name].shape}, expected {shape}")

    # ---- id maps ------------------------------------------------------------------------------------
    def movie_index(self, movie_id: int) -> int | None:
        return self._movie_index.get(int(movie_id))

    def movie_indexes(self, movie_ids: Sequence[int]) -> IndexArray:
        """Indexes of the known movies among ``movie_ids``, in order; unknown ids are skipped."""
        found = (self._movie_index.get(int(m)) for m in movie_ids)
        return np.fromiter((i for i in found if i is not None), dtype=np.int64)

    # ---- the user tower -----------------------------------------------------------------------------
    def user_vector(
        self,
        history_movie_ids: Sequence[int],
        kinds: Sequence[int] | None,
        timestamps: Sequence[int],
        profile: Mapping[str, str] | None,
        now: int,
        now_year: int | None = None,
    ) -> SequenceUserVector | None:
        """A user's vector from their latest engagements, oldest first (movie ids, ``InteractionKind``
        values or None for the default kind, epoch seconds) and their profile hash, as of ``now``.
        Movies the model does not know are skipped; None when no known movie is left."""
        if kinds is not None and len(kinds) != len(history_movie_ids):
            raise ValueError("kinds and history_movie_ids differ in length")
        if len(timestamps) != len(history_movie_ids):
            raise ValueError("timestamps and history_movie_ids differ in length")
        known = [(i, self._movie_index.get(int(m))) for i, m in enumerate(history_movie_ids)]
        rows = [i for i, index in known if index is not None]
        if not rows:
            return None
        rows = rows[-self.metadata.history_length :]
        # Only the known engagements go in (no padding), so the forward does no masked work.
        encoded = encode_history(
            [known[i][1] or 0 for i in rows],
            [self.metadata.default_kind if kinds is None else int(kinds[i]) for i in rows],
            [int(timestamps[i]) for i in rows],
            now,
            self.n_movies,
            len(rows),
        )
        year = now_year if now_year is not None else 1970 + int(now) // 31_556_952
        features = profile_vector(profile, self.metadata.profile_features, year)[None, :]
        vectors = self.user_vectors(encoded, features)
        return SequenceUserVector(vectors.gmf[0], vectors.mlp[0])

    def user_vectors(
        self, histories: EncodedHistories, profiles: FloatArray | None = None
    ) -> SequenceUserVector:
        """Batch form: (users, L) left-padded histories (L <= history length) -> (users, width)."""
        meta = self.metadata
        items, valid = histories.items, histories.valid
        _batch, length = items.shape
        w, n = self.weights, SequenceWeights
        position = w[n.POSITION][meta.history_length - length :]
        x = self._item_input[items] + w[n.KIND][histories.kinds] + position + w[n.GAP][histories.gaps]
        x *= valid[..., None]
        # Causal over valid keys; a padded query sees itself only (its output is never read).
        allowed = np.tril(np.ones((length, length), dtype=bool))[None] & valid[:, None, :]
        allowed |= np.eye(length, dtype=bool)[None]
        bias = np.where(allowed, np.float32(0), np.float32(-np.inf))[:, None]  # (batch, 1, L, L)
        for k, block in enumerate(self.blocks):
            last = k == len(self.blocks) - 1  # the last block is only needed at the latest position
            x = self._block(x, block, bias, last)
            x *= valid[:, -x.shape[1] :, None]
        z = _layer_norm(x[:, -1], w[n.FINAL_LN_W], w[n.FINAL_LN_B]) + w[n.QUERY_GAP][histories.query_gap]
        if profiles is not None and profiles.shape[1]:
            z = z + profiles.astype(np.float32) @ self.profile_w
        gmf = z @ self.user_gmf_w + w[n.USER_GMF_B]
        mlp = z @ self.user_mlp_w + w[n.USER_MLP_B]
        return SequenceUserVector(gmf.astype(np.float32), mlp.astype(np.float32))

    def _block(self, x: FloatArray, p: dict[str, FloatArray], bias: FloatArray, last: bool) -> FloatArray:
        meta = self.metadata
        batch, length, dim = x.shape
        heads, head_dim = meta.heads, dim // meta.heads
        h = _layer_norm(x, p["ln1_w"], p["ln1_b"])
        qkv = h @ p["qkv_w"] + p["qkv_b"]  # (batch, L, 3d)
        q, k, v = (
            qkv[..., j * dim : (j + 1) * dim].reshape(batch, length, heads, head_dim) for j in range(3)
        )
        if last:
            q, x, bias = q[:, -1:], x[:, -1:], bias[:, :, -1:]
        scores = np.einsum("bqhe,bkhe->bhqk", q, k) / np.float32(np.sqrt(head_dim)) + bias
        scores -= scores.max(axis=-1, keepdims=True)
        attention = np.exp(scores)
        attention /= attention.sum(axis=-1, keepdims=True)
        mixed = np.einsum("bhqk,bkhe->bqhe", attention, v).reshape(batch, -1, dim)
        x = x + mixed @ p["proj_w"] + p["proj_b"]
        h = _layer_norm(x, p["ln2_w"], p["ln2_b"])
        h = np.maximum(h @ p["ffn1_w"] + p["ffn1_b"], 0.0)
        out: FloatArray = (x + h @ p["ffn2_w"] + p["ffn2_b"]).astype(np.float32)
        return out

    # ---- the head ------------------------------------------------------------------------------------
    def _mlp(self, h: FloatArray) -> FloatArray:
        np.maximum(h, 0.0, out=h)
        for weight, bias in self.hidden:
            h = h @ weight
            h += bias
            np.maximum(h, 0.0, out=h)
        out: FloatArray = h @ self.out_mlp
        return out

    def logits(self, user: SequenceUserVector, movie_indexes: npt.NDArray[np.integer[Any]]) -> FloatArray:
        movies = np.asarray(movie_indexes, dtype=np.int64)
        h = self.item_mlp[movies] + user.mlp  # fancy indexing copies: in-place ops are safe
        gmf = self.item_gmf[movies] @ (user.gmf * self.out_gmf)
        return (gmf + self._mlp(h) + self.out_bias).astype(np.float32)

    def score(self, user: SequenceUserVector, movie_indexes: npt.NDArray[np.integer[Any]]) -> FloatArray:
        """Probability-like scores in (0, 1) for one user and a vector of movie indexes."""
        return _sigmoid(self.logits(user, movie_indexes))

    def logits_many(
        self, users: SequenceUserVector, movie_indexes: npt.NDArray[np.integer[Any]]
    ) -> FloatArray:
        """(users, candidates) logits for (users, width) vectors: evaluation and batch re-ranking."""
        movies = np.asarray(movie_indexes, dtype=np.int64)
        batch, width = movies.shape
        h = (self.item_mlp[movies] + users.mlp[:, None, :]).reshape(batch * width, -1)
        gmf: FloatArray = np.einsum("bmd,bd->bm", self.item_gmf[movies], users.gmf * self.out_gmf)
        return (gmf + self._mlp(h).reshape(batch, width) + self.out_bias).astype(np.float32)

    def retrieval_scores(self, user: SequenceUserVector) -> FloatArray:
        """The GMF term over the whole catalogue: a dot product, for retrieval before the head re-ranks."""
        out: FloatArray = self.item_gmf @ (user.gmf * self.out_gmf)
        return out

    def cold_movie_logits(self, user: SequenceUserVector, raw_features: FloatArray) -> FloatArray:
        """Logits of movies the model has never seen, from their raw features (no ID embedding)."""
        x = self.metadata.movie_features.apply(raw_features)
        w, n = self.weights, SequenceWeights
        item_gmf = x @ w[n.ITEM_GMF_PROJ].T
        h = (x @ w[n.ITEM_MLP_PROJ].T + w[n.ITEM_MLP_BIAS] + user.mlp).astype(np.float32)
        return (item_gmf @ (user.gmf * self.out_gmf) + self._mlp(h) + self.out_bias).astype(np.float32)

    def with_metadata(self, **changes: Any) -> SequenceModel:
        return SequenceModel(self.weights, replace(self.metadata, **changes))


def save(model: SequenceModel) -> bytes:
    return write_archive(model.metadata.to_json(), model.weights)


def load(data: bytes) -> SequenceModel:
    """A format-2 artifact; a format-1 (ID-based NeuMF) one is refused with a message saying so."""
    metadata_json, weights = read_archive(data)
    return SequenceModel(weights, SequenceMetadata.from_json(metadata_json))
