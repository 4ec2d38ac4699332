"""NeuMF (He et al. 2017): a GMF branch and an MLP branch over user and movie representations, fused
by one output layer. Each representation is an ID embedding plus a dense projection of the entity's
normalised features, so a movie with no interactions (ID embedding zero) is still scored from its
features; ID-dropout during training teaches the model to do exactly that.

The MLP's first layer over ``concat(user, movie)`` is a sum of a user part and a movie part; we
parameterise those parts directly (``user_mlp``/``movie_mlp``, width ``mlp_layers[0]``), which is the
same function class and lets every per-entity quantity be computed once per entity, not per sample.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from movierec.artifact import Weights

Mode = Literal["neumf", "gmf", "mlp"]


@dataclass(frozen=True)
class NeuMFParams:
    factors: int = 64  # GMF width
    mlp_layers: tuple[int, ...] = (64, 32, 16)  # first hidden width, then the tower
    learning_rate: float = 0.003
    batch_size: int = 16_384
    negatives: int = 4
    l2: float = 1e-3  # on the batch's representations, per sample
    item_id_dropout: float = 0.1
    user_id_dropout: float = 0.0
    gmf_aux_weight: float = 0.0  # extra loss on the GMF term alone, so retrieval by it ranks well
    use_features: bool = True
    loss: str = "bce"  # "bce" (pointwise, NCF) or "softmax" (each positive against its own negatives)
    gmf_init: bool = False  # start the GMF branch from ALS factors (MF pre-training, closed form)
    pretrain_epochs: int = 0  # > 0: pre-train GMF and MLP separately, then fuse (NCF section 3.4.1)
    beta1: float = 0.9
    beta2: float = 0.999

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["mlp_layers"] = list(self.mlp_layers)
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NeuMFParams:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        if "mlp_layers" in values:
            values["mlp_layers"] = tuple(int(v) for v in values["mlp_layers"])
        return cls(**values)


class _Gather(torch.autograd.Function):
    """``table[ids]`` whose backward is ``index_add_``: 2-3x faster on CPU than the embedding or
    indexing backward for the large batches we use."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.rows = table.shape[0]
        return F.embedding(ids, table)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.rows, grad.shape[1]).index_add_(0, ids, grad)
        return out, None


def gather(table: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return cast(torch.Tensor, _Gather.apply(table, ids))  # type: ignore[no-untyped-call]


class _Side(nn.Module):
    """One side (users or movies): ID embeddings plus feature projections, for both branches."""

    features: torch.Tensor
    id_mask: torch.Tensor

    def __init__(
        self, n: int, features: torch.Tensor, factors: int, width: int, bias: bool, cold: torch.Tensor | None
    ) -> None:
        super().__init__()
        self.gmf = nn.Embedding(n, factors)
        self.mlp = nn.Embedding(n, width)
        nn.init.normal_(self.gmf.weight, std=0.01)
        nn.init.normal_(self.mlp.weight, std=0.01)
        self.register_buffer("features", features.float().contiguous())
        # 0 for entities with no training pair: their ID embedding is never used, in training or after.
        id_mask = torch.ones(n)
        if cold is not None:
            id_mask[cold] = 0.0
        self.register_buffer("id_mask", id_mask)
        self.has_cold = cold is not None and len(cold) > 0
        n_features = int(features.shape[1])
        self.gmf_proj = nn.Linear(n_features, factors, bias=False) if n_features else None
        self.mlp_proj = nn.Linear(n_features, width, bias=False) if n_features else None
        self.mlp_bias = nn.Parameter(torch.zeros(width)) if bias else None
        for proj in (self.gmf_proj, self.mlp_proj):
            if proj is not None:
                nn.init.normal_(proj.weight, std=0.01)

    def rows(self, ids: torch.Tensor | None, id_dropout: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(gmf, mlp) representations of the rows ``ids`` (all rows when None)."""
        if ids is None:
            gmf, mlp = self.gmf.weight, self.mlp.weight
            features: torch.Tensor = self.features
            keep: torch.Tensor = self.id_mask
        else:
            gmf, mlp = self.gmf(ids), self.mlp(ids)
            features = self.features[ids]
            keep = self.id_mask[ids]
        if self.training and id_dropout > 0:
            keep = keep * (torch.rand(gmf.shape[0]) >= id_dropout).to(gmf.dtype)
            gmf, mlp = gmf * keep.unsqueeze(1), mlp * keep.unsqueeze(1)
        elif self.has_cold:
            gmf, mlp = gmf * keep.unsqueeze(1), mlp * keep.unsqueeze(1)
        if self.gmf_proj is not None and self.mlp_proj is not None:
            gmf = gmf + self.gmf_proj(features)
            mlp = mlp + self.mlp_proj(features)
        if self.mlp_bias is not None:
            mlp = mlp + self.mlp_bias
        return gmf, mlp

    def gather(
        self, ids: torch.Tensor, id_dropout: float, penalise: tuple[float, float] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample (gmf, mlp) representations, computed once per distinct entity in the batch, and
        the batch mean of their squared norms (GMF and MLP weighted by ``penalise``; 0 when None).

        The penalty is taken on the entity rows weighted by how often each occurs in the batch:
        the same value as per sample, for a fraction of the work.
        """
        if ids.numel() >= self.gmf.num_embeddings:
            gmf, mlp = self.rows(None, id_dropout)
            index = ids
        else:
            unique, index = torch.unique(ids, return_inverse=True)
            gmf, mlp = self.rows(unique, id_dropout)
        penalty = torch.zeros(())
        if penalise is not None:
            counts = torch.bincount(index, minlength=gmf.shape[0]).to(gmf.dtype)
            norms = penalise[0] * gmf.square().sum(1) + penalise[1] * mlp.square().sum(1)
            penalty = (counts * norms).sum() / max(ids.numel(), 1)
        return gather(gmf, index), gather(mlp, index), penalty


class NeuMF(nn.Module):
    def __init__(
        self,
        n_users: int,
        n_movies: int,
        user_features: torch.Tensor,
        movie_features: torch.Tensor,
        params: NeuMFParams,
        mode: Mode = "neumf",
        cold_users: torch.Tensor | None = None,
        cold_movies: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.params = params
        self.mode = mode
        layers = params.mlp_layers
        if not params.use_features:
            user_features = user_features[:, :0]
            movie_features = movie_features[:, :0]
        self.users = _Side(n_users, user_features, params.factors, layers[0], False, cold_users)
        self.movies = _Side(n_movies, movie_features, params.factors, layers[0], True, cold_movies)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layers))
        for layer in self.linear_layers():
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.out_gmf = nn.Parameter(torch.empty(params.factors))
        self.out_mlp = nn.Parameter(torch.empty(layers[-1]))
        nn.init.uniform_(self.out_gmf, -1 / params.factors**0.5, 1 / params.factors**0.5)
        nn.init.uniform_(self.out_mlp, -1 / layers[-1] ** 0.5, 1 / layers[-1] ** 0.5)
        self.out_bias = nn.Parameter(torch.zeros(1))

    def linear_layers(self) -> list[nn.Linear]:
        return [cast(nn.Linear, layer) for layer in self.hidden]

    def mlp_tower(self, h: torch.Tensor) -> torch.Tensor:
        h = F.relu(h)
        for layer in self.hidden:
            h = F.relu(layer(h))
        return h @ self.out_mlp

    def terms(
        self, user_gmf: torch.Tensor, user_mlp: torch.Tensor, movie_gmf: torch.Tensor, movie_mlp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logit, GMF term) for aligned per-sample representations."""
        gmf = (
            (user_gmf * movie_gmf) @ self.out_gmf if self.mode != "mlp" else user_gmf.new_zeros(len(user_gmf))
        )
        logit = gmf + self.out_bias
        if self.mode != "gmf":
            logit = logit + self.mlp_tower(user_mlp + movie_mlp)
        return logit, gmf

    def forward(
        self, users: torch.Tensor, movies: torch.Tensor, penalty: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logit, GMF-only logit + bias, mean squared norm of the representations read, when asked)."""
        weights = (float(self.mode != "mlp"), float(self.mode != "gmf")) if penalty else None
        user_gmf, user_mlp, user_penalty = self.users.gather(users, self.params.user_id_dropout, weights)
        movie_gmf, movie_mlp, movie_penalty = self.movies.gather(movies, self.params.item_id_dropout, weights)
        logit, gmf = self.terms(user_gmf, user_mlp, movie_gmf, movie_mlp)
        return logit, gmf + self.out_bias, user_penalty + movie_penalty

    @torch.no_grad()
    def entity_vectors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(user_gmf, user_mlp, movie_gmf, movie_mlp) for every row, as scored (no dropout)."""
        was = self.training
        self.eval()
        user_gmf, user_mlp = self.users.rows(None, 0.0)
        movie_gmf, movie_mlp = self.movies.rows(None, 0.0)
        self.train(was)
        return user_gmf, user_mlp, movie_gmf, movie_mlp

    def load_mf(
        self,
        user_factors: npt.NDArray[np.float32],
        movie_factors: npt.NDArray[np.float32],
        scale: float = 4.0,
    ) -> None:
        """GMF embeddings from a matrix factorisation (``user . movie`` ~ preference in [0, 1]); the
        output weights start at ``scale`` so the GMF term alone spans a useful logit range."""
        with torch.no_grad():
            self.users.gmf.weight.copy_(torch.from_numpy(np.asarray(user_factors, dtype=np.float32)))
            self.movies.gmf.weight.copy_(torch.from_numpy(np.asarray(movie_factors, dtype=np.float32)))
            self.out_gmf.fill_(scale)
            self.out_bias.fill_(-scale / 2)

    def load_pretrained(self, gmf: NeuMF, mlp: NeuMF, alpha: float = 0.5) -> None:
        """NeuMF from a pre-trained GMF and MLP: their embeddings, and outputs weighted alpha : 1-alpha."""
        with torch.no_grad():
            for mine, theirs, part in ((self.users, gmf.users, "gmf"), (self.movies, gmf.movies, "gmf")):
                getattr(mine, part).weight.copy_(getattr(theirs, part).weight)
                if mine.gmf_proj is not None and theirs.gmf_proj is not None:
                    mine.gmf_proj.weight.copy_(theirs.gmf_proj.weight)
            for mine, theirs in ((self.users, mlp.users), (self.movies, mlp.movies)):
                mine.mlp.weight.copy_(theirs.mlp.weight)
                if mine.mlp_proj is not None and theirs.mlp_proj is not None:
                    mine.mlp_proj.weight.copy_(theirs.mlp_proj.weight)
                if mine.mlp_bias is not None and theirs.mlp_bias is not None:
                    mine.mlp_bias.copy_(theirs.mlp_bias)
            for layer, source in zip(self.hidden, mlp.hidden, strict=True):
                layer.load_state_dict(source.state_dict())
            self.out_gmf.copy_(alpha * gmf.out_gmf)
            self.out_mlp.copy_((1 - alpha) * mlp.out_mlp)
            self.out_bias.copy_(alpha * gmf.out_bias + (1 - alpha) * mlp.out_bias)


def export_weights(model: NeuMF) -> dict[str, npt.NDArray[np.float32]]:
    """The artifact's arrays (``movierec.artifact.Weights``), fold-in excluded (see ``fit_fold_in``)."""
    if model.mode != "neumf":
        raise ValueError("only a fused NeuMF model is exported")
    user_gmf, user_mlp, movie_gmf, movie_mlp = model.entity_vectors()

    def np32(t: torch.Tensor) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    movies = model.movies
    n_features = int(movies.features.shape[1])
    width, factors = model.params.mlp_layers[0], model.params.factors
    gmf_proj = movies.gmf_proj.weight if movies.gmf_proj is not None else torch.zeros(factors, n_features)
    mlp_proj = movies.mlp_proj.weight if movies.mlp_proj is not None else torch.zeros(width, n_features)
    assert movies.mlp_bias is not None
    weights = {
        Weights.USER_GMF: np32(user_gmf),
        Weights.USER_MLP: np32(user_mlp),
        Weights.ITEM_GMF: np32(movie_gmf),
        Weights.ITEM_MLP: np32(movie_mlp),
        Weights.OUT_GMF: np32(model.out_gmf),
        Weights.OUT_MLP: np32(model.out_mlp),
        Weights.OUT_BIAS: np32(model.out_bias),
        Weights.ITEM_GMF_PROJ: np32(gmf_proj),
        Weights.ITEM_MLP_PROJ: np32(mlp_proj),
        Weights.ITEM_MLP_BIAS: np32(movies.mlp_bias),
    }
    if n_features:  # what serving swaps fresh features into (movierec.artifact.ModelArtifact.item_vectors)
        weights[Weights.ITEM_FEATURES] = np32(movies.features)
    for k, layer in enumerate(model.linear_layers()):
        weights[Weights.hidden_w(k)] = np32(layer.weight)
        weights[Weights.hidden_b(k)] = np32(layer.bias)
    return weights


def fit_fold_in(
    user_vectors: npt.NDArray[np.float32],
    history_means: npt.NDArray[np.float32],
    ridge: float = 1.0,
) -> npt.NDArray[np.float32]:
    """Least squares from [mean of a user's recent movie vectors, 1] to the user's vector.

    Both arrays are (users, factors + h0), GMF columns first. Returns (factors + h0 + 1, factors + h0).
    """
    x = np.hstack([history_means.astype(np.float64), np.ones((len(history_means), 1))])
    penalty = ridge * np.eye(x.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    solution = np.linalg.solve(x.T @ x + penalty, x.T @ user_vectors.astype(np.float64))
    return solution.astype(np.float32)
