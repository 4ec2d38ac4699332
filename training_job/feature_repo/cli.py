"""``python -m training_job features [--run-id RUN] [--cutoff TIME]`` and ``features backfill --start
D1 --end D2``: the parser (no Feast at import: every command builds it) and the command."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, date, datetime


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-id", default=None, help="read the run's export (runs/RUN_ID/dataset.npz)")
    parser.add_argument(
        "--cutoff", type=datetime.fromisoformat, help="features as of this ISO time (default: the export's)"
    )
    actions = parser.add_subparsers(dest="features_action")
    fill = actions.add_parser("backfill", help="recompute the daily partitions from --start to --end")
    fill.add_argument("--start", type=date.fromisoformat, required=True)
    fill.add_argument("--end", type=date.fromisoformat, required=True)
    fill.add_argument("--materialize", action="store_true", help="then materialize up to --end")
    fill.add_argument("--run-id", default=None, dest="backfill_run_id")


def run(args: argparse.Namespace) -> int:
    """Runs the parsed ``features`` command: 0 done, 2 bad configuration or input."""
    from pydantic import ValidationError

    from movierec.config import TrainingSettings
    from training_job.feature_repo.settings import FeatureStoreSettings
    from training_job.feature_repo.stage import aware, backfill, run_stage
    from training_job.pipeline import EXIT_BAD_INPUT, Pipeline, StageInputError

    try:
        training = TrainingSettings()
        settings = FeatureStoreSettings()
    except ValidationError as error:
        print(f"error: bad configuration: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    run_id = getattr(args, "backfill_run_id", None) or args.run_id
    pipeline = Pipeline(training, run_id or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    try:
        cutoff = aware(args.cutoff) if args.cutoff else None
        inputs = pipeline.load_inputs() if run_id else pipeline.export(cutoff)
        if args.features_action == "backfill":
            result = backfill(settings, inputs.dataset, args.start, args.end, args.materialize)
        else:
            as_of = cutoff or datetime.fromtimestamp(int(inputs.data_cutoff) + 1, UTC)
            result = run_stage(settings, inputs.dataset, as_of)
    except (StageInputError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    pipeline.blobs.put(
        pipeline.prefix + "features/feature_run.json",
        json.dumps(result.to_dict(), sort_keys=True).encode(),
        "application/json",
    )
    print(json.dumps(result.to_dict(), sort_keys=True))
    return 0
