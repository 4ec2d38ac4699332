"""``python -m training_job {train,features,sequence-train,benchmark,make-ncf-split}``: the one entry point
and parser."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from training_job import pipeline  # no torch at import: fit imports it when a model is trained
from training_job.pushgateway import configured_url, run_and_push


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Everything written to fd 1 (our logs, library prints, C extensions) goes to stderr, so stdout
    carries exactly the one JSON object printed afterwards."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training_job", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="the scheduled pipeline (training_job.pipeline)")
    pipeline.add_arguments(train)

    features = commands.add_parser(
        "features", help="the feature stage: dated Parquet, apply, materialize (docs/features.md)"
    )
    from training_job.feature_repo.cli import add_arguments as add_feature_arguments

    add_feature_arguments(features)

    sequence_train = commands.add_parser(
        "sequence-train", help="the sequence model with torch.distributed DDP (run it under torchrun)"
    )
    from training_job.distributed_train import add_arguments as add_sequence_train_arguments

    add_sequence_train_arguments(sequence_train)

    bench = commands.add_parser("benchmark", help="NeuMF vs popularity and tuned ALS on NCF-format files")
    bench.add_argument("--train", type=Path, required=True, help="train.rating")
    bench.add_argument("--test", type=Path, required=True, help="test.rating")
    bench.add_argument("--negatives", type=Path, required=True, help="test.negative")
    bench.add_argument("--budget-seconds", type=float, default=240.0, help="tuning budget, ALS + NeuMF")
    bench.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    bench.add_argument("--seed", type=int, default=7)
    bench.add_argument("--max-trials", type=int, default=None, help="cap on trials per search")
    bench.add_argument("--max-epochs", type=int, default=40)
    bench.add_argument("--params", type=json.loads, default=None, help="fixed NeuMF params (JSON): no search")
    bench.add_argument("--report", type=Path, default=None, help="write the HTML report into this folder")
    bench.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")

    split = commands.add_parser("make-ncf-split", help="NCF-format files from any MovieLens release")
    split.add_argument("movielens_path", type=Path)
    split.add_argument("out_dir", type=Path)
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--negatives", type=int, default=99)
    return parser


def _benchmark(args: argparse.Namespace) -> dict[str, Any]:
    from training_job.benchmark import BenchmarkFiles, run_benchmark
    from training_job.experiment import ExperimentConfig
    from training_job.fit import code_version
    from training_job.model import NeuMFParams
    from training_job.report import build_report

    config = ExperimentConfig(
        budget_seconds=args.budget_seconds,
        params=NeuMFParams.from_dict(args.params) if args.params is not None else None,
        max_epochs=args.max_epochs,
        seed=args.seed,
        max_trials=args.max_trials,
        code_version=code_version(),
        threads=args.threads,
    )
    summary, result = run_benchmark(BenchmarkFiles(args.train, args.test, args.negatives), config)
    if args.report is not None:
        files = build_report(
            f"benchmark: {args.train.parent}",
            result.metrics,
            result.baselines,
            result.params,
            result.timings,
            result.validation_history,
            {
                "NeuMF": result.neumf_tuning.trials if result.neumf_tuning else [],
                "ALS": result.als_tuning.trials,
            },
            {"train": str(args.train), "test": str(args.test), "negatives": str(args.negatives)},
        )
        args.report.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (args.report / name).write_bytes(data)
    return summary


def _make_ncf_split(args: argparse.Namespace) -> str:
    from training_job.data import make_ncf_split, write_ncf
    from training_job.sources.movielens import load_movielens

    dataset = load_movielens(args.movielens_path)
    data, compact = make_ncf_split(dataset, args.negatives, args.seed)
    write_ncf(args.out_dir, data)
    id_map: dict[str, list[str] | list[int]] = {
        "users": compact.users.ids,
        "movies": [int(m) for m in compact.movies.ids],
    }
    (args.out_dir / "id_map.json").write_text(json.dumps(id_map))
    return (
        f"{args.out_dir}: {len(data.train)} training pairs, {len(data.test_user)} test users, "
        f"{data.train.n_movies} movies, {data.negatives.shape[1]} negatives each"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "train":
        return run_and_push(lambda: pipeline.run(args), configured_url(), stage=args.stage)
    if args.command == "features":
        from training_job.feature_repo.cli import run as run_features  # imports Feast

        return run_and_push(lambda: run_features(args), configured_url(), stage="features")
    if args.command == "sequence-train":
        from training_job.distributed_train import run as run_sequence_train  # imports torch

        return run_sequence_train(args)
    if args.command == "make-ncf-split":
        print(_make_ncf_split(args))
        return 0
    if args.json:
        with stdout_to_stderr():
            summary = _benchmark(args)
        print(json.dumps(summary, sort_keys=True))
    else:
        summary = _benchmark(args)
        print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
