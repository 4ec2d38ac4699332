"""The sequence model: NeuMF's ranking head over a user tower that reads the user's ordered history.

User tower (SASRec, Kang & McAuley 2018): the latest ``HISTORY_LENGTH`` engagements, each its movie's
embedding (scaled by sqrt(d), shared with the head's GMF side as SASRec shares input and output
embeddings) plus event-kind, learned-position and time-gap embeddings, through pre-LN blocks of
causal multi-head attention and a point-wise FFN with residuals and dropout. The output at a position
is the user after that engagement; the gap to "now" and the profile features are added after the
final LayerNorm, so one causal pass yields a user vector for every prefix (every prefix is a sample).

Movie side: ID embedding + projection of the movie's features, with ID-dropout (as ``model.py``), so a
movie without interactions is scored, and can be read in a history, from its features alone.
Nothing is per user. The numpy forward is ``movierec.sequence``; ``export_weights`` writes its arrays.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from movierec.history import HISTORY_LENGTH
from movierec.sequence import SequenceWeights
from movierec.sequence_encoding import GAP_BUCKETS, KINDS, EncodedHistories
from training_job.model import gather


@dataclass(frozen=True)
class SequenceParams:
    dim: int = 64  # d: tower width and GMF factors
    heads: int = 2
    blocks: int = 2
    ffn_dim: int = 64  # SASRec's point-wise FFN keeps d
    dropout: float = 0.2
    mlp_layers: tuple[int, ...] = (32, 16)  # the head's MLP: first hidden width, then the tower
    history_length: int = HISTORY_LENGTH
    # < history_length: overlapping windows, each target reads >= length - stride engagements, for
    # length / stride times the encoder work; 25 measured no better than 50 at a fixed budget.
    window_stride: int = HISTORY_LENGTH
    learning_rate: float = 3e-3  # measured better than SASRec's 1e-3 within a fixed time budget
    batch_size: int = 128  # windows per step (each up to ``history_length`` samples)
    loss: str = "softmax"  # "softmax" (each target against its own negatives) or "bce"
    negatives: int = 32  # uniform, per target
    weight_decay: float = 0.0
    item_id_dropout: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mlp_layers"] = list(self.mlp_layers)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> SequenceParams:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "mlp_layers" in values:
            values["mlp_layers"] = tuple(int(v) for v in values["mlp_layers"])
        return cls(**values)


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ffn1, self.ffn2 = nn.Linear(dim, ffn_dim), nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        mixed = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=allowed
        )
        x = x + self.dropout(self.proj(mixed.transpose(1, 2).reshape(batch, length, dim)))
        h = self.dropout(F.relu(self.ffn1(self.ln2(x))))
        out: torch.Tensor = x + self.dropout(self.ffn2(h))
        return out


class SequenceNeuMF(nn.Module):
    movie_features: torch.Tensor
    id_mask: torch.Tensor

    def __init__(
        self,
        n_movies: int,
        movie_features: torch.Tensor,
        n_profile: int,
        params: SequenceParams,
        cold_movies: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.params = params
        d, h0 = params.dim, params.mlp_layers[0]
        self.n_movies = n_movies
        self.item_gmf = nn.Embedding(n_movies, d)
        self.item_mlp = nn.Embedding(n_movies, h0)
        for table in (self.item_gmf, self.item_mlp):
            nn.init.normal_(table.weight, std=0.05)
        self.register_buffer("movie_features", movie_features.float().contiguous())
        id_mask = torch.ones(n_movies)
        if cold_movies is not None:
            id_mask[cold_movies] = 0.0  # no training pair: the ID embedding is never read
        self.register_buffer("id_mask", id_mask)
        n_features = int(movie_features.shape[1])
        self.gmf_proj = nn.Linear(n_features, d, bias=False)
        self.mlp_proj = nn.Linear(n_features, h0, bias=False)
        self.item_mlp_bias = nn.Parameter(torch.zeros(h0))
        self.kind = nn.Embedding(KINDS, d)
        self.position = nn.Embedding(params.history_length, d)
        self.gap = nn.Embedding(GAP_BUCKETS, d)
        self.query_gap = nn.Embedding(GAP_BUCKETS, d)
        for table in (self.kind, self.position, self.gap, self.query_gap):
            nn.init.normal_(table.weight, std=0.02)
        self.profile = nn.Linear(n_profile, d, bias=False) if n_profile else None
        self.blocks = nn.ModuleList(
            _Block(d, params.heads, params.ffn_dim, params.dropout) for _ in range(params.blocks)
        )
        self.final_ln = nn.LayerNorm(d)
        self.embed_dropout = nn.Dropout(params.dropout)
        self.user_gmf = nn.Linear(d, d)
        self.user_mlp = nn.Linear(d, h0)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(params.mlp_layers))
        self.out_gmf = nn.Parameter(torch.full((d,), 1.0 / math.sqrt(d)))
        self.out_mlp = nn.Parameter(torch.empty(params.mlp_layers[-1]))
        nn.init.uniform_(self.out_mlp, -1 / params.mlp_layers[-1] ** 0.5, 1 / params.mlp_layers[-1] ** 0.5)
        self.out_bias = nn.Parameter(torch.zeros(1))

    # ---- movies ------------------------------------------------------------------------------------
    def movie_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(gmf, mlp) for every movie; ID-dropout while training."""
        keep = self.id_mask
        if self.training and self.params.item_id_dropout > 0:
            drop = torch.rand(self.n_movies, device=keep.device) < self.params.item_id_dropout
            keep = keep * (~drop).to(keep.dtype)
        gmf = self.item_gmf.weight * keep[:, None] + self.gmf_proj(self.movie_features)
        mlp = self.item_mlp.weight * keep[:, None] + self.mlp_proj(self.movie_features) + self.item_mlp_bias
        return gmf, mlp

    # ---- users -------------------------------------------------------------------------------------
    def encode(
        self, histories: EncodedHistories | dict[str, torch.Tensor], gmf_table: torch.Tensor
    ) -> torch.Tensor:
        """(batch, L, d): the tower's output at every position (before the final LayerNorm)."""
        t = histories if isinstance(histories, dict) else as_tensors(histories, gmf_table.device)
        items, valid = t["items"], t["valid"]
        length = items.shape[1]
        positions = torch.arange(
            self.params.history_length - length, self.params.history_length, device=items.device
        )
        # Padding (index n_movies) reads movie 0, zeroed below by ``valid``: no padding row to copy.
        x = gather_rows(gmf_table, items.clamp(max=self.n_movies - 1))
        x = x * math.sqrt(self.params.dim)
        x = x + self.kind(t["kinds"]) + self.position(positions)[None] + self.gap(t["gaps"])
        x = self.embed_dropout(x) * valid[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        allowed = (causal[None] & valid[:, None, :]) | torch.eye(
            length, dtype=torch.bool, device=items.device
        )
        allowed = allowed[:, None]  # (batch, 1, L, L), broadcast over heads
        for block in self.blocks:
            x = block(x, allowed) * valid[..., None]
        out: torch.Tensor = x
        return out

    def user_vectors(
        self, encoded: torch.Tensor, query_gap: torch.Tensor, profile: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(gmf, mlp) user vectors from tower outputs (..., d) and query-gap buckets (...)."""
        z = self.final_ln(encoded) + self.query_gap(query_gap)
        if self.profile is not None and profile is not None:
            z = z + self.profile(profile)
        return self.user_gmf(z), self.user_mlp(z)

    # ---- the head ----------------------------------------------------------------------------------
    def _mlp_term(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(h)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return h @ self.out_mlp

    def head(
        self, user_gmf: torch.Tensor, user_mlp: torch.Tensor, movie_gmf: torch.Tensor, movie_mlp: torch.Tensor
    ) -> torch.Tensor:
        """(..., users, movies) logits of every user row against every movie row of the same batch:
        users (..., u, width), movies (..., n, width). A window's positions share its negatives, so
        the GMF term is one matmul per window and the movie rows are gathered once per window."""
        gmf = (user_gmf * self.out_gmf) @ movie_gmf.transpose(-1, -2)
        return gmf + self._mlp_term(user_mlp[..., :, None, :] + movie_mlp[..., None, :, :]) + self.out_bias

    def pair_logits(
        self, user_gmf: torch.Tensor, user_mlp: torch.Tensor, movie_gmf: torch.Tensor, movie_mlp: torch.Tensor
    ) -> torch.Tensor:
        """(n,) logits of aligned (n, width) rows: the same function as ``head``, one movie per user."""
        gmf = (user_gmf * self.out_gmf * movie_gmf).sum(-1)
        return gmf + self._mlp_term(user_mlp + movie_mlp) + self.out_bias

    @torch.no_grad()
    def score_histories(
        self, histories: EncodedHistories, profile: torch.Tensor | None, movies: torch.Tensor
    ) -> torch.Tensor:
        """(users, candidates) logits of ``movies`` for the users whose histories are given."""
        gmf_table, mlp_table = self.movie_tables()
        t = as_tensors(histories, gmf_table.device)
        encoded = self.encode(t, gmf_table)[:, -1]
        user_gmf, user_mlp = self.user_vectors(encoded, t["query_gap"], profile)
        return self.head(user_gmf[:, None], user_mlp[:, None], gmf_table[movies], mlp_table[movies])[:, 0]


def gather_rows(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``table[ids]`` for any shape of ``ids``, with ``model.gather``'s fast backward."""
    return gather(table, ids.reshape(-1)).view(*ids.shape, table.shape[1])


def as_tensors(histories: EncodedHistories, device: torch.device) -> dict[str, torch.Tensor]:
    def put(a: npt.NDArray[Any]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    return {
        "items": put(histories.items),
        "kinds": put(histories.kinds),
        "gaps": put(histories.gaps),
        "valid": put(histories.valid),
        "query_gap": put(histories.query_gap),
    }


def export_weights(model: SequenceNeuMF) -> dict[str, npt.NDArray[np.float32]]:
    """The arrays of ``movierec.sequence.SequenceWeights`` (movie vectors as scored: no dropout)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        gmf_table, mlp_table = model.movie_tables()
    model.train(was)

    def np32(t: torch.Tensor) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    n, d = SequenceWeights, model.params.dim
    out = {
        n.ITEM_GMF: np32(gmf_table),
        n.ITEM_MLP: np32(mlp_table),
        n.ITEM_GMF_PROJ: np32(model.gmf_proj.weight),
        n.ITEM_MLP_PROJ: np32(model.mlp_proj.weight),
        n.ITEM_MLP_BIAS: np32(model.item_mlp_bias),
        n.KIND: np32(model.kind.weight),
        n.POSITION: np32(model.position.weight),
        n.GAP: np32(model.gap.weight),
        n.QUERY_GAP: np32(model.query_gap.weight),
        n.PROFILE: np32(model.profile.weight) if model.profile is not None else np.zeros((d, 0), np.float32),
        n.FINAL_LN_W: np32(model.final_ln.weight),
        n.FINAL_LN_B: np32(model.final_ln.bias),
        n.USER_GMF_W: np32(model.user_gmf.weight),
        n.USER_GMF_B: np32(model.user_gmf.bias),
        n.USER_MLP_W: np32(model.user_mlp.weight),
        n.USER_MLP_B: np32(model.user_mlp.bias),
        n.OUT_GMF: np32(model.out_gmf),
        n.OUT_MLP: np32(model.out_mlp),
        n.OUT_BIAS: np32(model.out_bias),
    }
    for k, module in enumerate(model.blocks):
        assert isinstance(module, _Block)
        for part, tensor in (
            ("ln1_w", module.ln1.weight), ("ln1_b", module.ln1.bias),
            ("qkv_w", module.qkv.weight), ("qkv_b", module.qkv.bias),
            ("proj_w", module.proj.weight), ("proj_b", module.proj.bias),
            ("ln2_w", module.ln2.weight), ("ln2_b", module.ln2.bias),
            ("ffn1_w", module.ffn1.weight), ("ffn1_b", module.ffn1.bias),
            ("ffn2_w", module.ffn2.weight), ("ffn2_b", module.ffn2.bias),
        ):  # fmt: skip
            out[n.block(k, part)] = np32(tensor)
    for k, layer in enumerate(model.hidden):
        assert isinstance(layer, nn.Linear)
        out[n.hidden_w(k)] = np32(layer.weight)
        out[n.hidden_b(k)] = np32(layer.bias)
    return out
