"""What the state-machine tests share (test_statemachine*.py, test_runner.py): the pipeline's stages, a
recorder standing in for the AWS service calls and for time.sleep, and a fake training job."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra.local.statemachine import StatesError

STAGES = ["export", "fit", "publish"]


class Recorder:
    """Stands in for the AWS service calls and for time.sleep."""

    def __init__(self, failures: Mapping[str, int] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.sleeps: list[float] = []
        self.failures = dict(failures or {})

    def call(self, service: str, action: str, parameters: Mapping[str, Any]) -> Any:
        self.calls.append((service, action, dict(parameters)))
        if self.failures.get(service, 0) > 0:
            self.failures[service] -= 1
            raise StatesError("SNS.InternalErrorException", "the service failed")
        return {"MessageId": f"m{len(self.calls)}"} if service == "sns" else {}

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def published(self) -> list[dict[str, Any]]:
        return [parameters for service, _, parameters in self.calls if service == "sns"]


FAKE_JOB_SOURCE = '''\
"""Stands in for `python -m training_job train`: records its call, exits as FAKE_JOB_PLAN says."""
import json
import os
import sys
from pathlib import Path

args = sys.argv[1:]
stage = args[args.index("--stage") + 1] if "--stage" in args else "all"
stage = "features" if args[:1] == ["features"] else stage
log = Path(os.environ["FAKE_JOB_LOG"])
calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
attempt = sum(1 for call in calls if call["stage"] == stage)
names = ("ARTIFACT_BUCKET", "POWERTOOLS_SERVICE_NAME", "REDIS_URL", "MONGODB_URI", "AWS_ENDPOINT_URL")
record = {"stage": stage, "argv": args, "env": {name: os.environ.get(name) for name in names}}
with log.open("a") as handle:
    handle.write(json.dumps(record) + "\\n")
codes = json.loads(os.environ.get("FAKE_JOB_PLAN", "{}")).get(stage, [0])
sys.exit(codes[min(attempt, len(codes) - 1)])
'''


def write_fake_job(directory: Path) -> tuple[Path, Path]:
    """The fake job script and the file it logs its calls to (one JSON line per call)."""
    script = directory / "fake_job.py"
    script.write_text(FAKE_JOB_SOURCE)
    return script, directory / "calls.jsonl"


def job_calls(log: Path, *, attribute: bool = False, features: bool = False) -> list[dict[str, Any]]:
    """The training stages' calls; with ``attribute`` the attribution stage's too (it runs first), with
    ``features`` the feature stage's (after export)."""
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    skipped = ({"attribute"} - ({"attribute"} if attribute else set())) | (
        set() if features else {"features"}
    )
    return [call for call in calls if call["stage"] not in skipped]
