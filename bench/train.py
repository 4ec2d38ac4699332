"""Training throughput: our NeuMF trainer against the popular public PyTorch NCF re-implementation's
loop, on the same data, in the same run.

The reference (guoyang9/NCF) samples negatives one pair at a time in Python (``while (u, j) in
train_mat``), batches 256 samples through a DataLoader, and trains NCF (32 factors, MLP 256-128-64-32)
with Adam. Ours samples a whole epoch with tensor operations and trains in large slices. Both are
timed end to end (negative sampling included) in interleaved rounds; the figure that matters is the
ratio, which the machine's speed (and a noisy neighbour) largely cancels out of.

``python -m bench.train [--quick] [--json] [--movielens PATH]``; the issue's target is a ratio >= 10.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # why: see training_job/__init__.py

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]  # no stubs in the venv
import torch
from torch import nn

from bench.common import claim_stdout, format_table, parser, print_json, progress, ratio
from movierec.data.dataset import Dataset
from training_job.data import IntArray, Positives, compact_ids, implicit_feedback, subset_movies, subset_users
from training_job.features import compute_features
from training_job.model import NeuMFParams
from training_job.sources.synthetic import SyntheticConfig, generate
from training_job.train import TrainData, TrainOptions, train_neumf, use_all_cores

# The anchor's scale: about 3,000 users and 485k ratings (ML-1M-like density).
ANCHOR = SyntheticConfig(n_users=3_000, n_movies=3_700, n_events=485_000, seed=1)
QUICK = SyntheticConfig(n_users=1_000, n_movies=2_000, n_events=120_000, seed=1)


class ReferenceNCF(nn.Module):
    """guoyang9/NCF's ``NCF`` model (NeuMF-end, no pre-training), factor_num=32, num_layers=3."""

    def __init__(self, n_users: int, n_items: int, factors: int = 32, layers: int = 3) -> None:
        super().__init__()
        width = factors * 2 ** (layers - 1)
        self.user_gmf = nn.Embedding(n_users, factors)
        self.item_gmf = nn.Embedding(n_items, factors)
        self.user_mlp = nn.Embedding(n_users, width)
        self.item_mlp = nn.Embedding(n_items, width)
        modules: list[nn.Module] = []
        for i in range(layers):
            size = factors * 2 ** (layers - i)
            modules += [nn.Dropout(0.0), nn.Linear(size, size // 2), nn.ReLU()]
        self.mlp = nn.Sequential(*modules)
        self.predict = nn.Linear(factors * 2, 1)
        for embedding in (self.user_gmf, self.item_gmf, self.user_mlp, self.item_mlp):
            nn.init.normal_(embedding.weight, std=0.01)

    def forward(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        gmf = self.user_gmf(user) * self.item_gmf(item)
        mlp = self.mlp(torch.cat([self.user_mlp(user), self.item_mlp(item)], dim=-1))
        out: torch.Tensor = self.predict(torch.cat([gmf, mlp], dim=-1)).view(-1)
        return out


class ReferenceData(torch.utils.data.Dataset[tuple[int, int, float]]):
    """guoyang9/NCF's ``NCFData``: per-sample Python negative sampling against a dok_matrix."""

    def __init__(self, train: Positives, negatives: int, seed: int) -> None:
        self.positives = np.stack([train.user, train.movie], axis=1).tolist()
        self.n_items = train.n_movies
        self.negatives = negatives
        self.matrix = sp.dok_matrix((train.n_users, train.n_movies), dtype=np.float32)
        for user, item in self.positives:
            self.matrix[user, item] = 1.0
        self.rng = np.random.default_rng(seed)
        self.samples: list[tuple[int, int, float]] = []

    def ng_sample(self) -> None:
        negatives: list[tuple[int, int, float]] = []
        for user, _ in self.positives:
            for _ in range(self.negatives):
                item = int(self.rng.integers(self.n_items))
                while (user, item) in self.matrix:
                    item = int(self.rng.integers(self.n_items))
                negatives.append((user, item, 0.0))
        self.samples = [(u, i, 1.0) for u, i in self.positives] + negatives

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, int, float]:
        return self.samples[index]


def reference_rate(train: Positives, seconds: float, seed: int) -> dict[str, float]:
    """Samples/s of the reference loop: one epoch's sampling, then batches until ``seconds`` pass."""
    torch.manual_seed(seed)
    data = ReferenceData(train, 4, seed)
    model = ReferenceNCF(train.n_users, train.n_movies)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    loss_function = nn.BCEWithLogitsLoss()
    tick = time.perf_counter()
    data.ng_sample()
    sampling = time.perf_counter() - tick
    loader = torch.utils.data.DataLoader(data, batch_size=256, shuffle=True, num_workers=0)
    trained, tick = 0, time.perf_counter()
    for user, item, label in loader:
        optimizer.zero_grad()
        loss = loss_function(model(user, item), label.float())
        torch.autograd.backward(loss)
        optimizer.step()
        trained += len(user)
        if time.perf_counter() - tick > seconds:
            break
    training = time.perf_counter() - tick
    # An epoch costs its sampling plus one pass; extrapolate the pass from the timed batches.
    per_sample = sampling / len(data) + training / max(trained, 1)
    return {
        "samples_per_second": 1.0 / per_sample,
        "sampling_seconds_per_epoch": sampling,
        "epoch_seconds": per_sample * len(data),
    }


def our_rate(
    train: Positives, dataset: Dataset, user_rows: IntArray, movie_rows: IntArray, epochs: int
) -> dict[str, float]:
    users, movies = subset_users(dataset.users, user_rows), subset_movies(dataset.movies, movie_rows)
    features = compute_features(train, users, movies, int(train.timestamp.max()) + 1)
    data = TrainData(
        train, torch.from_numpy(features.users.normalised), torch.from_numpy(features.movies.normalised)
    )
    result = train_neumf(data, NeuMFParams(), TrainOptions(max_epochs=epochs, progress=False, quiet=True))
    timings = result.timings()
    return {
        "samples_per_second": result.samples_per_second,
        "compute_samples_per_second": timings["compute_samples_per_second"],
        "data_fraction": timings["data_fraction"],
        "epoch_seconds": (result.data_seconds + result.compute_seconds) / max(len(result.history), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser("python -m bench.train", __doc__ or "")
    arguments.add_argument(
        "--movielens", type=Path, default=None, help="a MovieLens folder instead of synthetic"
    )
    arguments.add_argument("--rounds", type=int, default=None)
    args = arguments.parse_args(argv)
    stream = claim_stdout() if args.json else None
    threads = use_all_cores()
    if args.movielens is not None:
        from training_job.sources.movielens import load_movielens

        dataset = load_movielens(args.movielens)
    else:
        dataset = generate(QUICK if args.quick else ANCHOR)
    pairs = implicit_feedback(dataset)
    # A synthetic heavy user can have nearly every movie; the reference's rejection loop would spin.
    saturated = pairs.user_counts() > 0.5 * pairs.n_movies
    train, user_rows, movie_rows = compact_ids(pairs.take(~saturated[pairs.user]))
    rounds = args.rounds or (1 if args.quick else 2)
    seconds, epochs = (8.0, 2) if args.quick else (20.0, 4)
    progress(f"{dataset.name}: {len(train)} positives, {rounds} rounds, {threads} threads")
    reference: list[dict[str, float]] = []
    ours: list[dict[str, float]] = []
    for round_index in range(rounds):
        # Interleaved, order alternating: a noisy neighbour slows both loops, not one.
        for which in ("reference", "ours") if round_index % 2 == 0 else ("ours", "reference"):
            if which == "reference":
                reference.append(reference_rate(train, seconds, round_index))
            else:
                ours.append(our_rate(train, dataset, user_rows, movie_rows, epochs))
        progress(
            f"round {round_index + 1}: reference {reference[-1]['samples_per_second']:,.0f}/s, "
            f"ours {ours[-1]['samples_per_second']:,.0f}/s"
        )

    def best(rows: list[dict[str, float]]) -> dict[str, float]:
        return max(rows, key=lambda r: r["samples_per_second"])

    result: dict[str, Any] = {
        "dataset": dataset.name,
        "positives": len(train),
        "threads": threads,
        "reference": best(reference),
        "ours": best(ours),
        "throughput_ratio": ratio(best(ours)["samples_per_second"], best(reference)["samples_per_second"]),
    }
    if stream is not None:
        print_json(result, stream)
    else:
        rows = [
            [name, result[name]["samples_per_second"], result[name]["epoch_seconds"]]
            for name in ("reference", "ours")
        ]
        print(format_table(rows, ["loop", "samples/s", "epoch s"]))
        print(f"ratio: {result['throughput_ratio']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
