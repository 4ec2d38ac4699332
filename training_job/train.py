"""The training loop, NVIDIA-NCF style: one vectorised negative-sampling pass per epoch, a single
shuffle, large batches sliced from contiguous tensors, Adam, early stopping on validation NDCG@10.

Timings are kept apart: ``data_seconds`` (sampling + shuffling), ``compute_seconds`` (forward,
backward, step) and ``eval_seconds`` (validation), so the data pipeline's share is measured.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812

from training_job.data import Positives
from training_job.evaluate import EvalCases, FloatMatrix, IntArray, K, metrics_from_ranks, sampled_ranks
from training_job.model import Mode, NeuMF, NeuMFParams
from training_job.progress import Progress
from training_job.sampling import (
    EpochSamples,
    GroupedSamples,
    NegativeSampler,
    epoch_samples,
    grouped_samples,
)


def use_all_cores(threads: int | None = None) -> int:
    """``torch.set_num_threads`` to the machine's cores (or ``threads``); returns the count."""
    count = threads or os.cpu_count() or 1
    torch.set_num_threads(count)
    return count


@dataclass(frozen=True)
class TrainData:
    train: Positives
    user_features: torch.Tensor  # normalised, (users, features)
    movie_features: torch.Tensor
    validation: EvalCases | None = None
    cold_movies: npt.NDArray[np.int64] | None = None  # movies without a train pair: features only
    # (user factors, movie factors) of an MF fitted on the same pairs (ALS): the GMF branch's
    # pre-training when ``params.gmf_init`` is set; their width must equal ``params.factors``.
    mf_factors: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]] | None = None


@dataclass(frozen=True)
class TrainOptions:
    max_epochs: int = 30
    patience: int = 3  # epochs without a better validation NDCG before stopping
    seed: int = 7
    deadline: float | None = None  # time.monotonic() after which no new epoch starts
    progress: bool | None = None  # None: a bar on a terminal
    quiet: bool = False  # no per-epoch log lines (tuning trials)
    threads: int | None = None  # None: every core (tiny test runs are faster on one)


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    val_hr: float
    val_ndcg: float
    elapsed: float  # seconds since training began


@dataclass
class TrainResult:
    model: NeuMF
    params: NeuMFParams
    best_epoch: int
    best_ndcg: float
    history: list[EpochLog] = field(default_factory=list)
    samples: int = 0
    data_seconds: float = 0.0
    compute_seconds: float = 0.0
    eval_seconds: float = 0.0
    total_seconds: float = 0.0
    time_to_best: float = 0.0

    @property
    def samples_per_second(self) -> float:
        """End-to-end training throughput: samples over (data pipeline + compute) time."""
        busy = self.data_seconds + self.compute_seconds
        return self.samples / busy if busy > 0 else 0.0

    def timings(self) -> dict[str, float]:
        busy = self.data_seconds + self.compute_seconds
        return {
            "samples": float(self.samples),
            "samples_per_second": self.samples_per_second,
            "compute_samples_per_second": self.samples / self.compute_seconds
            if self.compute_seconds
            else 0.0,
            "data_seconds": self.data_seconds,
            "compute_seconds": self.compute_seconds,
            "data_fraction": self.data_seconds / busy if busy else 0.0,
            "eval_seconds": self.eval_seconds,
            "train_seconds": self.total_seconds,
            "time_to_best_seconds": self.time_to_best,
            "best_epoch": float(self.best_epoch),
            "epochs": float(len(self.history)),
        }


class TorchScorer:
    """Scores with a model's current weights (entity vectors computed once, no dropout)."""

    def __init__(self, model: NeuMF) -> None:
        self.model = model
        self.user_gmf, self.user_mlp, self.movie_gmf, self.movie_mlp = model.entity_vectors()
        self.n_movies = int(self.movie_gmf.shape[0])

    @torch.no_grad()
    def score_pairs(self, users: IntArray, movies: npt.NDArray[np.int64]) -> FloatMatrix:
        u = torch.from_numpy(np.asarray(users, dtype=np.int64))
        m = torch.from_numpy(np.asarray(movies, dtype=np.int64))
        rows, width = m.shape
        u_flat = u.repeat_interleave(width)
        m_flat = m.reshape(-1)
        logit, _ = self.model.terms(
            self.user_gmf[u_flat], self.user_mlp[u_flat], self.movie_gmf[m_flat], self.movie_mlp[m_flat]
        )
        out: FloatMatrix = logit.reshape(rows, width).numpy()
        return out

    def score_all(self, users: IntArray) -> FloatMatrix:
        movies = np.broadcast_to(np.arange(self.n_movies, dtype=np.int64), (len(users), self.n_movies))
        return self.score_pairs(users, movies)


def validate(model: NeuMF, cases: EvalCases) -> tuple[float, float]:
    model.eval()
    metrics = metrics_from_ranks(sampled_ranks(TorchScorer(model), cases), K)
    model.train()
    return metrics.get(f"hr@{K}", 0.0), metrics.get(f"ndcg@{K}", 0.0)


def build_model(data: TrainData, params: NeuMFParams, mode: Mode = "neumf") -> NeuMF:
    cold = (
        None if data.cold_movies is None else torch.from_numpy(np.asarray(data.cold_movies, dtype=np.int64))
    )
    return NeuMF(
        data.train.n_users,
        data.train.n_movies,
        data.user_features,
        data.movie_features,
        params,
        mode,
        cold_movies=cold,
    )


def train_neumf(
    data: TrainData,
    params: NeuMFParams,
    options: TrainOptions,
    on_epoch: Any = None,
) -> TrainResult:
    """Train, keep the weights of the best validation epoch (or the last, without validation).

    ``on_epoch(epoch, ndcg)`` may raise to stop early (Optuna pruning).
    """
    use_all_cores(options.threads)
    torch.manual_seed(options.seed)
    model = build_model(data, params)
    if params.pretrain_epochs > 0:
        short = replace(options, max_epochs=params.pretrain_epochs, quiet=True, deadline=options.deadline)
        plain = replace(params, pretrain_epochs=0)
        gmf = _fit(build_model(data, plain, "gmf"), data, plain, short, None).model
        mlp = _fit(build_model(data, plain, "mlp"), data, plain, short, None).model
        model.load_pretrained(gmf, mlp)
    if params.gmf_init:
        if data.mf_factors is None:
            raise ValueError("gmf_init needs TrainData.mf_factors")
        model.load_mf(*data.mf_factors)
    return _fit(model, data, params, options, on_epoch)


def _train_epoch(
    model: NeuMF, optimizer: torch.optim.Optimizer, samples: EpochSamples, params: NeuMFParams
) -> float:
    """One pass over the shuffled samples in contiguous slices; returns the summed loss."""
    total = torch.zeros(())
    n, batch = len(samples), params.batch_size
    for begin in range(0, n, batch):
        end = min(begin + batch, n)
        logit, gmf_logit, penalty = model(samples.user[begin:end], samples.movie[begin:end], params.l2 > 0)
        label, weight = samples.label[begin:end], samples.weight[begin:end]
        loss = F.binary_cross_entropy_with_logits(logit, label, weight=weight)
        if params.gmf_aux_weight > 0:
            aux = F.binary_cross_entropy_with_logits(gmf_logit, label, weight=weight)
            loss = loss + params.gmf_aux_weight * aux
        if params.l2 > 0:
            loss = loss + params.l2 * penalty
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)  # typed, unlike Tensor.backward
        optimizer.step()
        total += loss.detach() * (end - begin)
    return float(total)


def _train_epoch_softmax(
    model: NeuMF, optimizer: torch.optim.Optimizer, samples: GroupedSamples, params: NeuMFParams
) -> float:
    """Listwise: cross-entropy of each positive against its own sampled negatives."""
    total = torch.zeros(())
    width = samples.movie.shape[1]
    rows, step = samples.movie.shape[0], max(1, params.batch_size // width)
    for begin in range(0, rows, step):
        end = min(begin + step, rows)
        movies = samples.movie[begin:end]
        users = samples.user[begin:end].repeat_interleave(width)
        logit, gmf_logit, penalty = model(users, movies.reshape(-1), params.l2 > 0)
        target = torch.zeros(end - begin, dtype=torch.int64)
        weight = samples.weight[begin:end]
        loss = (F.cross_entropy(logit.view(-1, width), target, reduction="none") * weight).mean()
        if params.gmf_aux_weight > 0:
            aux = (F.cross_entropy(gmf_logit.view(-1, width), target, reduction="none") * weight).mean()
            loss = loss + params.gmf_aux_weight * aux
        if params.l2 > 0:
            loss = loss + params.l2 * penalty
        optimizer.zero_grad(set_to_none=True)
        torch.autograd.backward(loss)
        optimizer.step()
        total += loss.detach() * (end - begin) * width
    return float(total)


def _fit(
    model: NeuMF, data: TrainData, params: NeuMFParams, options: TrainOptions, on_epoch: Any
) -> TrainResult:
    start = time.monotonic()
    generator = torch.Generator().manual_seed(options.seed)
    # fused: one pass over the parameters per step instead of ~8 (the embedding tables dominate).
    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.learning_rate, betas=(params.beta1, params.beta2), fused=True
    )
    sampler = NegativeSampler(data.train, generator)
    result = TrainResult(model, params, best_epoch=0, best_ndcg=-1.0)
    best_state: dict[str, torch.Tensor] | None = None
    stale = 0
    model.train()
    with Progress(f"train[{model.mode}]", options.max_epochs, options.progress, options.quiet) as progress:
        for epoch in range(1, options.max_epochs + 1):
            if options.deadline is not None and epoch > 1 and time.monotonic() >= options.deadline:
                break
            tick = time.perf_counter()
            listwise = params.loss == "softmax"
            samples: EpochSamples | GroupedSamples = (
                grouped_samples(data.train, sampler, params.negatives, generator)
                if listwise
                else epoch_samples(data.train, sampler, params.negatives, generator)
            )
            result.data_seconds += time.perf_counter() - tick

            tick = time.perf_counter()
            if isinstance(samples, GroupedSamples):
                loss_sum = _train_epoch_softmax(model, optimizer, samples, params)
            else:
                loss_sum = _train_epoch(model, optimizer, samples, params)
            n = len(samples)
            result.compute_seconds += time.perf_counter() - tick
            result.samples += n

            tick = time.perf_counter()
            hr, ndcg = validate(model, data.validation) if data.validation is not None else (0.0, 0.0)
            result.eval_seconds += time.perf_counter() - tick
            elapsed = time.monotonic() - start
            log = EpochLog(epoch, loss_sum / max(n, 1), hr, ndcg, elapsed)
            result.history.append(log)
            progress.step(epoch=epoch, loss=log.loss, val_hr=hr, val_ndcg=ndcg)

            if data.validation is None or ndcg > result.best_ndcg:
                result.best_epoch, result.best_ndcg, result.time_to_best = epoch, ndcg, elapsed
                best_state = copy.deepcopy(model.state_dict()) if data.validation is not None else None
                stale = 0
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(epoch, ndcg)
            if data.validation is not None and stale >= options.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.total_seconds = time.monotonic() - start
    return result
