"""The sequence model's serving cost, in numpy as the recommend Lambda runs it: one user's vector from
``HISTORY_LENGTH`` engagements (``SequenceModel.user_vector``), then the head over 200 candidates, and
the online tier's whole ``SequenceScorer.rank`` (vector, retrieval over the catalogue, head, top 50);
and the artifact's size for 10k and for 1M users (no per-user weights: the same within 1%).

``python -m bench.sequence [--json] [--movies N] [--repeats N]``. Latency is measured on one thread,
as a Lambda has; the weights are an untrained model's (latency does not depend on their values).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one Lambda vCPU's worth, before numpy loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # why: see training_job/__init__.py

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from movierec import sequence
from movierec.data.dataset import Movies, Users
from movierec.history import HISTORY_LENGTH
from movierec.recommend.online import SequenceScorer
from movierec.sequence_encoding import profile_names
from training_job.data import positives_from_columns
from training_job.features import compute_features
from training_job.sequence_experiment import build_sequence_artifact
from training_job.sequence_model import SequenceNeuMF, SequenceParams

CANDIDATES = 200


def untrained_artifact(n_movies: int, n_users: int, params: SequenceParams) -> bytes:
    torch.manual_seed(0)
    movies = Movies(
        np.arange(1, n_movies + 1),
        [""] * n_movies,
        [("Drama",)] * n_movies,
        np.full(n_movies, 2000, np.int16),
    )
    none = np.zeros(0, np.int32)
    empty = positives_from_columns(
        none, none, np.zeros(0, np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), 1, n_movies
    )
    features = compute_features(empty, Users(["0"], [""]), movies, 1)
    users = Users([str(u) for u in range(n_users)], [f"region-{u % 8}" for u in range(n_users)])
    names = profile_names(users)
    model = SequenceNeuMF(n_movies, torch.from_numpy(features.movies.normalised), len(names), params)
    built = build_sequence_artifact(model, features, names, 1, list(range(1, n_movies + 1)), params, "bench")
    return sequence.save(built)


def run(n_movies: int, repeats: int) -> dict[str, Any]:
    params = SequenceParams()
    model = sequence.load(untrained_artifact(n_movies, 10_000, params))
    rng = np.random.default_rng(0)
    now = 1_700_000_000
    timings: dict[str, list[float]] = {"user_vector": [], "score_200": [], "total": [], "online_rank": []}
    scorer = SequenceScorer(model)  # what the online tier runs: vector, retrieval, head, top 50
    for _ in range(repeats):
        history = rng.choice(n_movies, HISTORY_LENGTH, replace=False) + 1
        times = np.sort(rng.integers(now - 86_400 * 90, now, HISTORY_LENGTH)).tolist()
        candidates = rng.choice(n_movies, CANDIDATES, replace=False)
        start = time.perf_counter()
        vector = model.user_vector(history.tolist(), None, times, {"region": "region-3"}, now)
        middle = time.perf_counter()
        assert vector is not None
        model.score(vector, candidates)
        end = time.perf_counter()
        timings["user_vector"].append(middle - start)
        timings["score_200"].append(end - middle)
        timings["total"].append(end - start)
        recent = [int(m) for m in history[::-1]]  # Redis keeps newest first
        start = time.perf_counter()
        scorer.rank(
            "u", recent, frozenset(recent), 50, [float(t) for t in times[::-1]], {"region": "region-3"}
        )
        timings["online_rank"].append(time.perf_counter() - start)
    latency = {
        name: {
            "p50_ms": float(np.percentile(values, 50) * 1e3),
            "p99_ms": float(np.percentile(values, 99) * 1e3),
        }
        for name, values in timings.items()
    }
    sizes = {str(n): len(untrained_artifact(n_movies, n, params)) for n in (10_000, 1_000_000)}
    spread = abs(sizes["10000"] - sizes["1000000"]) / sizes["10000"]
    return {
        "history_length": HISTORY_LENGTH,
        "dim": params.dim,
        "blocks": params.blocks,
        "movies": n_movies,
        "repeats": repeats,
        "latency": latency,
        "artifact_bytes": sizes,
        "artifact_size_spread": spread,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sequence", description=__doc__)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--movies", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=500)
    args = parser.parse_args()
    result = run(args.movies, args.repeats)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    for name, values in result["latency"].items():
        print(f"{name:12s} p50 {values['p50_ms']:.3f} ms  p99 {values['p99_ms']:.3f} ms")
    sizes = result["artifact_bytes"]
    spread = result["artifact_size_spread"]
    print(f"artifact: {sizes['10000']} bytes at 10k users, {sizes['1000000']} at 1M ({spread:.3%})")


if __name__ == "__main__":
    main()
