"""Training the sequence model: every prefix of every user's history predicts the engagement after it,
against uniformly sampled negatives, with either loss (``SequenceParams.loss``):

- ``"bce"``: each target and each of its negatives is a binary label (NCF's pointwise loss);
- ``"softmax"``: cross-entropy of each target against its own negatives (a sampled softmax).

A negative equal to its target is masked out. Early stopping on validation NDCG@10 (99 sampled
negatives, ``training_job.evaluate``); a ``Trainer`` can be resumed, so the loss probe's winner
continues where it stopped. The device is chosen once, here (``device()``): CUDA when present.
"""

from __future__ import annotations

import copy
import functools
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812

from movierec.sequence_encoding import EncodedHistories
from training_job.evaluate import EvalCases, FloatMatrix, IntArray, K, metrics_from_ranks, sampled_ranks
from training_job.sequence_data import Windows, history_rows
from training_job.sequence_model import SequenceNeuMF, SequenceParams, as_tensors, gather_rows


@functools.cache
def device() -> torch.device:
    """The one place the training device is chosen: CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class SequenceTrainData:
    windows: Windows
    movie_features: torch.Tensor  # normalised, (movies, features)
    profiles: torch.Tensor  # (users, profile features), possibly 0 columns
    validation: EvalCases | None = None
    validation_histories: EncodedHistories | None = None  # row i scores validation case i
    cold_movies: npt.NDArray[np.int64] | None = None


@dataclass(frozen=True)
class SequenceEpoch:
    epoch: int
    loss: float
    val_hr: float
    val_ndcg: float
    elapsed: float  # seconds since the trainer's clock (the experiment's start) at the epoch's end


@dataclass
class SequenceTrainResult:
    best_epoch: int = 0
    best_ndcg: float = -1.0
    best_hr: float = 0.0  # validation HR@10 at the best epoch
    history: list[SequenceEpoch] = field(default_factory=list)
    targets: int = 0  # positives trained on (a positive and its negatives are one target)
    pairs: int = 0  # (user, movie) scores computed: targets * (1 + negatives)
    compute_seconds: float = 0.0
    eval_seconds: float = 0.0
    time_to_best: float = 0.0

    def timings(self) -> dict[str, float]:
        busy = self.compute_seconds
        return {
            "targets_per_second": self.targets / busy if busy else 0.0,
            "samples_per_second": self.pairs / busy if busy else 0.0,
            "compute_seconds": self.compute_seconds,
            "eval_seconds": self.eval_seconds,
            "time_to_best_seconds": self.time_to_best,
            "best_epoch": float(self.best_epoch),
            "epochs": float(len(self.history)),
        }


class SequenceScorer:
    """``evaluate.Scorer`` over precomputed user vectors: case user ``u`` is row ``rows[u]``."""

    def __init__(self, model: SequenceNeuMF, histories: EncodedHistories, profiles: torch.Tensor | None,
                 rows: npt.NDArray[np.int64], chunk: int = 1024) -> None:  # fmt: skip
        self.model, self.rows = model, rows
        self.n_movies = model.n_movies
        was = model.training
        model.eval()
        with torch.no_grad():
            self.gmf_table, self.mlp_table = model.movie_tables()
            parts_g, parts_m = [], []
            for begin in range(0, len(histories), chunk):
                part = history_rows(histories, slice(begin, begin + chunk))
                t = as_tensors(part, self.gmf_table.device)
                encoded = model.encode(t, self.gmf_table)[:, -1]
                profile = None if profiles is None else profiles[begin : begin + chunk]
                g, m = model.user_vectors(encoded, t["query_gap"], profile)
                parts_g.append(g)
                parts_m.append(m)
            self.user_gmf = torch.cat(parts_g) if parts_g else torch.zeros(0, model.params.dim)
            self.user_mlp = torch.cat(parts_m) if parts_m else torch.zeros(0, model.params.mlp_layers[0])
        model.train(was)

    @torch.no_grad()
    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        r = torch.from_numpy(self.rows[np.asarray(users, dtype=np.int64)]).to(self.user_gmf.device)
        m = torch.from_numpy(np.asarray(movies, dtype=np.int64)).to(self.user_gmf.device)
        logits = self.model.head(self.user_gmf[r][:, None], self.user_mlp[r][:, None], self.gmf_table[m],
                                 self.mlp_table[m])[:, 0]  # fmt: skip
        out: FloatMatrix = logits.cpu().numpy()
        return out

    def score_all(self, users: IntArray) -> FloatMatrix:
        movies = np.broadcast_to(np.arange(self.n_movies, dtype=np.int64), (len(users), self.n_movies))
        return self.score_pairs(users, movies)


def case_rows(cases: EvalCases, n_users: int) -> npt.NDArray[np.int64]:
    """user index -> row of the case (one case per user, as leave-last-out makes them)."""
    rows = np.zeros(n_users, dtype=np.int64)
    rows[cases.user] = np.arange(len(cases))
    return rows


class Trainer:
    """One model and its optimizer; ``run`` trains until patience, the deadline or ``max_epochs``,
    and may be called again to continue. The best validation state is kept in ``best_state``."""

    def __init__(
        self, data: SequenceTrainData, params: SequenceParams, seed: int, clock: float | None = None
    ) -> None:
        self.data, self.params = data, params
        self.clock = time.monotonic() if clock is None else clock  # elapsed times count from here
        torch.manual_seed(seed)
        self.generator = np.random.default_rng(seed)
        dev = device()
        cold = None if data.cold_movies is None else torch.from_numpy(np.asarray(data.cold_movies, np.int64))
        n_profile = int(data.profiles.shape[1])
        self.model = SequenceNeuMF(
            int(data.movie_features.shape[0]), data.movie_features, n_profile, params, cold
        ).to(dev)
        # fused: one pass over the parameters per step (the movie tables dominate them).
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=params.learning_rate, weight_decay=params.weight_decay, fused=True
        )
        self.profiles = data.profiles.to(dev)
        self.windows = as_tensors(data.windows.inputs, dev)
        self.target = torch.from_numpy(data.windows.target).to(dev)
        self.query_gaps = torch.from_numpy(data.windows.query_gaps).to(dev)
        self.user = torch.from_numpy(data.windows.user).to(dev)
        self.result = SequenceTrainResult()
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0
        self.epoch = 0

    def _step(self, rows: torch.Tensor) -> float:
        model, params = self.model, self.params
        gmf_table, mlp_table = model.movie_tables()
        batch = {k: v[rows] for k, v in self.windows.items()}
        profile = self.profiles[self.user[rows]][:, None, :]
        user_gmf, user_mlp = model.user_vectors(
            model.encode(batch, gmf_table), self.query_gaps[rows], profile
        )
        target = self.target[rows]
        keep = target >= 0
        positive = target[keep]
        n = int(positive.numel())
        # Negatives are drawn per window and shared by its positions: the movie rows are gathered once
        # per window, and the GMF term is a matmul (``head``).
        negative = torch.randint(model.n_movies, (len(rows), params.negatives), device=positive.device)
        negative_logits = model.head(
            user_gmf, user_mlp, gather_rows(gmf_table, negative), gather_rows(mlp_table, negative)
        )[keep]
        positive_logits = model.pair_logits(
            user_gmf[keep], user_mlp[keep], gather_rows(gmf_table, positive), gather_rows(mlp_table, positive)
        )
        logits = torch.cat([positive_logits[:, None], negative_logits], dim=1)
        hit = (negative[:, None, :] == target[:, :, None])[keep]  # accidental hits are not negatives
        if params.loss == "softmax":
            logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(hit, float("-inf"))], dim=1)
            loss = F.cross_entropy(logits, torch.zeros(n, dtype=torch.int64, device=logits.device))
        else:
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            weight = torch.ones_like(logits)
            weight[:, 1:] = (~hit).to(weight.dtype)
            loss = F.binary_cross_entropy_with_logits(logits, labels, weight=weight)
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        self.optimizer.step()
        self.result.targets += n
        self.result.pairs += n * (1 + params.negatives)
        return float(loss.detach()) * n

    def validate(self) -> tuple[float, float]:
        data = self.data
        if data.validation is None or data.validation_histories is None:
            return 0.0, 0.0
        profile = self.profiles[
            torch.from_numpy(data.validation.user.astype(np.int64)).to(self.profiles.device)
        ]
        rows = case_rows(data.validation, int(self.profiles.shape[0]))
        scorer = SequenceScorer(self.model, data.validation_histories, profile, rows)
        metrics = metrics_from_ranks(sampled_ranks(scorer, data.validation), K)
        return metrics.get(f"hr@{K}", 0.0), metrics.get(f"ndcg@{K}", 0.0)

    def run(self, max_epochs: int, patience: int, deadline: float | None) -> SequenceTrainResult:
        result, n = self.result, len(self.data.windows)
        for _ in range(max_epochs):
            if deadline is not None and self.epoch > 0 and time.monotonic() >= deadline:
                break  # the first epoch always starts: a trainer is never left unvalidated
            if self.best_state is not None and self.stale >= patience:
                break
            self.epoch += 1
            tick = time.perf_counter()
            self.model.train()
            order = torch.from_numpy(self.generator.permutation(n)).to(self.target.device)
            total, targets = 0.0, result.targets
            for begin in range(0, n, self.params.batch_size):
                total += self._step(order[begin : begin + self.params.batch_size])
                if deadline is not None and time.monotonic() >= deadline:
                    break  # a partial epoch still counts: validation decides whether it helped
            result.compute_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            self.model.eval()
            hr, ndcg = self.validate()
            result.eval_seconds += time.perf_counter() - tick
            elapsed = time.monotonic() - self.clock
            loss = total / max(result.targets - targets, 1)
            result.history.append(SequenceEpoch(self.epoch, loss, hr, ndcg, elapsed))
            if ndcg > result.best_ndcg or self.data.validation is None:
                result.best_epoch, result.best_ndcg, result.time_to_best = self.epoch, ndcg, elapsed
                result.best_hr = hr
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.stale = 0
            else:
                self.stale += 1
        return result

    def best_model(self) -> SequenceNeuMF:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self.model
