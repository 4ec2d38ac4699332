"""``python -m training_job sequence-train``: the sequence model trained with ``torch.distributed`` DDP.

    torchrun --standalone --nproc-per-node 2 -m training_job sequence-train \\
        [--movielens PATH | --synthetic-users 600 --synthetic-events 40000] [--epochs 8] [--seed 7] \\
        [--params JSON] [--checkpoint FILE] [--out FILE]

Every rank trains on its shard of each epoch (``sequence_train.Trainer``); gloo between CPU processes,
NCCL between GPUs (one per ``LOCAL_RANK``). Without torchrun it is one process, exactly as the
benchmark trains. With ``--checkpoint`` rank 0 writes the trainer after every epoch and a restarted
run (torchrun ``--max-restarts``, a SageMaker spot interruption with the file under
``/opt/ml/checkpoints``) continues from it. Rank 0 writes the result (validation history, throughput,
where it resumed) as JSON to ``--out``, else to stdout. Exit status: 0 done, 2 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from training_job.progress import log

if TYPE_CHECKING:  # torch is imported by run(), not by the parser
    from training_job.sequence_experiment import PreparedData
    from training_job.sequence_model import SequenceParams


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--movielens", type=Path, help="a MovieLens release (any format docs/data.md lists)")
    source.add_argument("--synthetic-users", type=int, default=600, help="synthetic data (default)")
    parser.add_argument("--synthetic-movies", type=int, default=400)
    parser.add_argument("--synthetic-events", type=int, default=40_000)
    parser.add_argument("--epochs", type=int, default=8, help="epochs in all (a resumed run counts its own)")
    parser.add_argument("--patience", type=int, default=1_000, help="early-stopping patience (epochs)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--params", type=json.loads, default=None, help="SequenceParams fields, as JSON")
    parser.add_argument("--checkpoint", type=Path, default=None, help="save after every epoch, resume from")
    parser.add_argument("--out", type=Path, default=None, help="rank 0's result JSON (default: stdout)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per process")


def run(args: argparse.Namespace) -> int:
    import torch

    from training_job.distributed import DistributedSettings, backend_for, setup, teardown
    from training_job.sequence_model import SequenceParams
    from training_job.sequence_train import Trainer, device

    try:
        settings = DistributedSettings()
        params = SequenceParams.from_dict(args.params or {})
    except (ValidationError, TypeError, ValueError) as error:
        print(f"error: bad configuration: {error}", file=sys.stderr)
        return 2
    if args.epochs < 1:
        print("error: --epochs must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) // settings.local_world_size))
    context = setup(settings, device())
    try:
        prepared = _prepared(args, params)
        trainer = Trainer(prepared.data, params, args.seed, context=context)
        try:
            resumed = trainer.restore(args.checkpoint) if args.checkpoint else False
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        resumed_from = trainer.epoch if resumed else 0
        log("sequence-train", rank=context.rank, world_size=context.world_size, pid=os.getpid(),
            resumed_from_epoch=resumed_from, windows=len(prepared.data.windows))  # fmt: skip
        started = time.monotonic()
        result = trainer.run(args.epochs, args.patience, None, args.checkpoint)
        wall = time.monotonic() - started
        if context.is_main:
            document: dict[str, Any] = {
                "world_size": context.world_size,
                "backend": backend_for(context.device) if context.active else None,
                "device": str(context.device),
                "resumed_from_epoch": resumed_from,
                "history": [asdict(epoch) for epoch in result.history],
                "best_epoch": result.best_epoch,
                "best_validation_ndcg@10": result.best_ndcg,
                "best_validation_hr@10": result.best_hr,
                "final_validation_ndcg@10": result.history[-1].val_ndcg,
                "final_validation_hr@10": result.history[-1].val_hr,
                "wall_seconds": wall,
                "targets": result.targets,
                "params": params.to_dict(),
            } | result.timings()
            text = json.dumps(document, sort_keys=True)
            if args.out:
                args.out.write_text(text + "\n", encoding="utf-8")
            else:
                print(text)
    finally:
        teardown(context)
    return 0


def _prepared(args: argparse.Namespace, params: SequenceParams) -> PreparedData:
    """The training windows and validation cases of the chosen data, as the benchmark prepares them."""
    import numpy as np

    from training_job.data import implicit_feedback
    from training_job.evaluate import EvalCases
    from training_job.experiment import ExperimentInput
    from training_job.sequence_experiment import SequenceConfig, prepare_data

    if args.movielens:
        from training_job.sources.movielens import load_movielens

        dataset = load_movielens(args.movielens)
    else:
        from training_job.sources.synthetic import SyntheticConfig, generate

        dataset = generate(
            SyntheticConfig(
                n_users=args.synthetic_users,
                n_movies=args.synthetic_movies,
                n_events=args.synthetic_events,
                seed=args.seed,
            )
        )
    pairs = implicit_feedback(dataset)
    none = np.zeros(0, dtype=np.int32)
    inp = ExperimentInput(
        pairs,
        EvalCases(none, none, np.zeros((0, 1), np.int32)),
        dataset.users,
        dataset.movies,
        int(dataset.interactions.timestamp.max()) + 1,
    )
    return prepare_data(inp, params, SequenceConfig(seed=args.seed, params=params))
