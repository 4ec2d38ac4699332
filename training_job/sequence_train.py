"""Training the sequence model: every prefix of every user's history predicts the engagement after it,
against uniformly sampled negatives, with either loss (``SequenceParams.loss``):

- ``"bce"``: each target and each of its negatives is a binary label (NCF's pointwise loss);
- ``"softmax"``: cross-entropy of each target against its own negatives (a sampled softmax).

A negative equal to its target is masked out. Early stopping on validation NDCG@10 (99 sampled
negatives, ``training_job.evaluate``); a ``Trainer`` can be resumed, so the loss probe's winner
continues where it stopped. The device is chosen once, here (``device()``): CUDA when present.

Under ``torchrun`` (``training_job/distributed.py``) the step runs in ``DistributedDataParallel``: each
rank takes its shard of every epoch's order with its share of the global batch, so a step's global
batch is the one a single process would take and gradients are averaged over it; rank 0 validates and
broadcasts the result, so every rank stops at the same epoch. ``checkpoint``/``restore`` hold what an
exact resume needs (weights, optimizer, every rank's RNG, the history), written by rank 0 after each
epoch when ``run`` is given a path.
"""

from __future__ import annotations

import copy
import functools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812
from torch.nn.parallel import DistributedDataParallel

from movierec.sequence_encoding import EncodedHistories
from training_job.distributed import Distributed
from training_job.evaluate import EvalCases, FloatMatrix, IntArray, K, metrics_from_ranks, sampled_ranks
from training_job.progress import log
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


class _TrainingLoss(nn.Module):
    """One step's loss as a module's forward, so ``DistributedDataParallel`` can wrap it (its gradient
    hooks are armed by ``forward``). Returns the mean loss and the number of targets it covers."""

    def __init__(self, model: SequenceNeuMF, params: SequenceParams) -> None:
        super().__init__()
        self.model, self.params = model, params

    def forward(
        self,
        batch: dict[str, torch.Tensor],
        query_gaps: torch.Tensor,
        profile: torch.Tensor,
        target: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        model, params = self.model, self.params
        gmf_table, mlp_table = model.movie_tables()
        user_gmf, user_mlp = model.user_vectors(model.encode(batch, gmf_table), query_gaps, profile)
        keep = target >= 0
        positive = target[keep]
        n = positive.numel()
        # Negatives are drawn per window and shared by its positions: the movie rows are gathered once
        # per window, and the GMF term is a matmul (``head``).
        negative = torch.randint(model.n_movies, (len(target), params.negatives), device=positive.device)
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
        return loss, torch.tensor(n)


class Trainer:
    """One model and its optimizer; ``run`` trains until patience, the deadline or ``max_epochs``,
    and may be called again to continue. The best validation state is kept in ``best_state``."""

    def __init__(
        self,
        data: SequenceTrainData,
        params: SequenceParams,
        seed: int,
        clock: float | None = None,
        context: Distributed | None = None,
    ) -> None:
        self.data, self.params = data, params
        self.context = context or Distributed(device=device())
        self.clock = time.monotonic() if clock is None else clock  # elapsed times count from here
        torch.manual_seed(seed)
        self.generator = np.random.default_rng(seed)  # the epoch order: the same on every rank
        dev = self.context.device
        cold = None if data.cold_movies is None else torch.from_numpy(np.asarray(data.cold_movies, np.int64))
        n_profile = int(data.profiles.shape[1])
        self.model = SequenceNeuMF(
            int(data.movie_features.shape[0]), data.movie_features, n_profile, params, cold
        ).to(dev)
        self.loss: nn.Module = _TrainingLoss(self.model, params)
        self.batch_size = params.batch_size
        if self.context.active:
            # Same initial weights everywhere (DDP also broadcasts rank 0's); different negatives and
            # dropout per rank. The buffers (movie features, id mask) never change: synced once, at init.
            torch.manual_seed(seed + 7919 * self.context.rank)
            self.loss = DistributedDataParallel(self.loss, forward_sync_buffers=False)
            self.batch_size = self.context.batch_size(params.batch_size)
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

    def _step(self, rows: torch.Tensor) -> tuple[float, int]:
        """One optimizer step over ``rows``; (summed loss, targets) of this rank's part."""
        batch = {k: v[rows] for k, v in self.windows.items()}
        profile = self.profiles[self.user[rows]][:, None, :]
        loss, n = self.loss(batch, self.query_gaps[rows], profile, self.target[rows])
        self.optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        self.optimizer.step()
        return float(loss.detach()) * int(n), int(n)

    def validate(self) -> tuple[float, float]:
        """Validation HR@10 and NDCG@10, computed on rank 0 and the same on every rank."""
        hr, ndcg = self._validate() if self.context.is_main else (0.0, 0.0)
        hr, ndcg = self.context.broadcast_floats([hr, ndcg])
        return hr, ndcg

    def _validate(self) -> tuple[float, float]:
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

    def run(
        self, max_epochs: int, patience: int, deadline: float | None, checkpoint: Path | None = None
    ) -> SequenceTrainResult:
        """Train until ``max_epochs`` epochs in all (a restored trainer counts those it did), patience
        or the deadline; with ``checkpoint``, rank 0 saves the trainer there after every epoch."""
        result, context = self.result, self.context

        def past(moment: float | None) -> bool:  # every rank takes the same decision
            return moment is not None and context.any(time.monotonic() >= moment)

        while self.epoch < max_epochs:
            if self.epoch > 0 and past(deadline):
                break  # the first epoch always starts: a trainer is never left unvalidated
            if self.best_state is not None and self.stale >= patience:
                break
            self.epoch += 1
            tick = time.perf_counter()
            self.model.train()
            order = self.generator.permutation(len(self.data.windows))
            rows = torch.from_numpy(context.shard(order)).to(self.target.device)
            total, targets = 0.0, 0
            for begin in range(0, len(rows), self.batch_size):
                loss_sum, n = self._step(rows[begin : begin + self.batch_size])
                total, targets = total + loss_sum, targets + n
                if past(deadline):
                    break  # a partial epoch still counts: validation decides whether it helped
            total, all_targets = context.sum_floats([total, float(targets)])
            result.targets += int(all_targets)
            result.pairs += int(all_targets) * (1 + self.params.negatives)
            result.compute_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            self.model.eval()
            hr, ndcg = self.validate()
            result.eval_seconds += time.perf_counter() - tick
            elapsed = time.monotonic() - self.clock
            result.history.append(SequenceEpoch(self.epoch, total / max(all_targets, 1), hr, ndcg, elapsed))
            if ndcg > result.best_ndcg or self.data.validation is None:
                result.best_epoch, result.best_ndcg, result.time_to_best = self.epoch, ndcg, elapsed
                result.best_hr = hr
                self.best_state = copy.deepcopy(self.model.state_dict())
                self.stale = 0
            else:
                self.stale += 1
            if checkpoint is not None:
                self.save(checkpoint)
        return result

    # ---- checkpoints ------------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Every rank calls it (the RNG states are gathered); rank 0 writes, atomically."""
        rng = self.context.gather_objects(torch.get_rng_state())
        log("sequence checkpoint", epoch=self.epoch, rank=self.context.rank, pid=os.getpid(), path=str(path))
        if not self.context.is_main:
            return
        state = {
            "epoch": self.epoch,
            "stale": self.stale,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "best_state": self.best_state,
            "order_rng": self.generator.bit_generator.state,
            "torch_rng": rng,
            "world_size": self.context.world_size,
            "result": asdict(self.result),
            "params": self.params.to_dict(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        torch.save(state, partial)
        os.replace(partial, path)  # a crash mid-write leaves the previous checkpoint whole

    def restore(self, path: Path) -> bool:
        """Continue from ``path`` when it exists (False otherwise). A checkpoint of another world size
        resumes the weights and history; the RNG streams then restart from this run's seeds."""
        if not path.is_file():
            return False
        state: dict[str, Any] = torch.load(path, map_location=self.context.device, weights_only=False)
        if state["params"] != self.params.to_dict():
            raise ValueError(f"checkpoint {path} was written with other parameters: {state['params']}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.best_state = state["best_state"]
        self.epoch, self.stale = int(state["epoch"]), int(state["stale"])
        self.generator.bit_generator.state = state["order_rng"]
        if state["world_size"] == self.context.world_size:
            torch.set_rng_state(state["torch_rng"][self.context.rank])
        saved = state["result"]
        saved["history"] = [SequenceEpoch(**epoch) for epoch in saved["history"]]
        self.result = SequenceTrainResult(**saved)
        return True

    def best_model(self) -> SequenceNeuMF:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        self.model.eval()
        return self.model
