"""``run-job``: the training container (``training``) or the whole training state machine (``pipeline``)
as local processes, with the training task's environment from the template."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from infra.local.bootstrap import aws_client
from infra.local.errors import UsageError
from infra.local.runner import LocalApp, app_from_args, common_options
from infra.local.statemachine import (
    DEFAULT_MAX_RETRY_DELAY_S,
    Boto3Calls,
    LocalEcsTask,
    LocalExecution,
    load_definition,
)
from infra.local.template import REPO_ROOT, training_environment

TRAINING_ENTRYPOINT = (sys.executable, "-m", "training_job")
"""The training image's ENTRYPOINT (python -m training_job), as a local process."""


def run_job_command(args: argparse.Namespace) -> int:
    app = app_from_args(args)
    job_args = list(args.job_args)
    if job_args[:1] == ["--"]:
        job_args = job_args[1:]
    if args.job == "pipeline":
        return run_pipeline(app, job_args)
    environment, command = training_environment(app.stack, app.cloud, environ=app.environ)
    argv = [*TRAINING_ENTRYPOINT, *(job_args or command or ["train"])]
    print(f"run-job {args.job}: {' '.join(argv[1:])}", file=sys.stderr)
    completed = subprocess.run(argv, cwd=REPO_ROOT, env={**app.environ, **environment}, check=False)
    return completed.returncode


def _pipeline_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local run-job pipeline",
        description="Run the template's training state machine locally, state by state.",
    )
    parser.add_argument("--state-machine", metavar="LOGICAL_ID", help="default: the template's only one")
    parser.add_argument(
        "--run-id",
        "--name",
        dest="name",
        help="the execution's name, which the stages get as --run-id (default: local-<UTC time>-<random>)",
    )
    parser.add_argument("--input", default="{}", help="the execution's input, JSON (default: {})")
    parser.add_argument(
        "--entrypoint",
        help="command standing in for the training image's ENTRYPOINT (default: python -m training_job)",
    )
    parser.add_argument(
        "--max-retry-delay",
        type=float,
        default=DEFAULT_MAX_RETRY_DELAY_S,
        metavar="SECONDS",
        help="cap on each Retry (and Wait) delay locally; AWS waits the full interval (default: %(default)s)",
    )
    return parser


def run_pipeline(app: LocalApp, job_args: Sequence[str]) -> int:
    """``run-job pipeline``: the state machine's log on stderr, the execution's summary (JSON) on stdout.

    Exit status 0 when the execution succeeded (the gate keeping the published model included), 1 when it
    failed or timed out, 2 for usage errors.
    """
    try:
        options = _pipeline_parser().parse_args(list(job_args))
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        execution_input = json.loads(options.input)
    except ValueError as error:
        raise UsageError(f"--input is not valid JSON: {error}") from error
    spec = app.stack.state_machine(options.state_machine)
    definition = load_definition(spec)
    environment, command = training_environment(app.stack, app.cloud, environ=app.environ)
    entrypoint = shlex.split(options.entrypoint) if options.entrypoint else list(TRAINING_ENTRYPOINT)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    endpoint = app.cloud.aws_endpoint_url
    execution = LocalExecution(
        definition,
        name=options.name,
        state_machine_name=spec.name,
        run_task=LocalEcsTask(
            {**app.environ, **environment},
            entrypoint=entrypoint,
            cwd=REPO_ROOT,
            default_command=command,
            task_definition=spec.substitutions.get("TrainingTaskDefinition"),
            log=log,
        ),
        call_service=Boto3Calls(lambda service: aws_client(service, endpoint)),
        log=log,
        max_retry_delay_s=options.max_retry_delay,
    )
    result = execution.run(execution_input)
    print(json.dumps(result.summary(), default=str))
    return 0 if result.status == "SUCCEEDED" else 1


def register(commands: Any) -> None:
    """Add run-job to ``python -m infra.local``."""
    job = commands.add_parser(
        "run-job",
        help="run the training container, or the whole training state machine, as local processes",
        description=(
            "Options (-t, --stack-name ...) go before the job name: run-job -t T training -- ARGS. "
            "`training` runs python -m training_job ARGS with the training task's environment; "
            "`pipeline` runs the template's state machine state by state (run-job pipeline --help)."
        ),
    )
    job.add_argument("job", choices=["training", "pipeline"])
    job.add_argument(
        "job_args",
        nargs=argparse.REMAINDER,
        help="everything after the job name (and an optional --): python -m training_job's arguments, "
        "or the pipeline's options",
    )
    common_options(job, env_vars=False)
    job.set_defaults(func=run_job_command)
