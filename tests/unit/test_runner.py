"""The docker-free runner on the tiny app in tests/fixtures/runner_app: function hosting, the CLI's
invoke and run-job, the Kinesis event-source-mapping emulator (against moto in-process) and the sample
events. (Over 400 lines: these share the fixture app's copy, its stack and the moto fixtures; the HTTP
API's tests, which need none of them, are in test_apigw.py.)"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import jobs
from infra.local.__main__ import main as run_cli
from infra.local.errors import UsageError
from infra.local.host import FunctionHost, HandlerError
from infra.local.kinesis import KinesisPoller, PollStats
from infra.local.lambda_context import LambdaContext
from infra.local.sample_events import EVENTS_DIR, build, render
from infra.local.template import DEFAULT_TEMPLATE, LocalCloud, Stack, local_environment
from movierec.events import parse_event
from tests.unit.statemachine_support import job_calls, write_fake_job

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_APP = REPO_ROOT / "tests" / "fixtures" / "runner_app"
NOW = 1_800_000_000.0


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A private copy of the fixture app, so its .local/ state lands in tmp_path."""
    target = tmp_path / "app"
    shutil.copytree(FIXTURE_APP, target)
    return target


@pytest.fixture
def stack(app_dir: Path) -> Stack:
    return Stack.load(app_dir / "template.yaml", stack_name="fx")


def host_for(stack: Stack, function_id: str, **cloud: str) -> FunctionHost:
    spec = stack.function(function_id)
    return FunctionHost(spec, local_environment(spec, LocalCloud(**cloud), environ={}))


# ---- hosting functions --------------------------------------------------------------------------------


def test_host_runs_the_handler_with_its_environment_layers_and_context(stack: Stack) -> None:
    before = dict(os.environ)
    host = host_for(stack, "ApiFunction")
    event = {"rawPath": "/x", "requestContext": {}}
    result = host.invoke(event)
    body = json.loads(result["body"])
    assert result["statusCode"] == 201
    assert body["greeting"] == "hello"
    assert body["unknowable"] is None
    assert body["layer"] == "from-the-layer"
    assert body["function_name"] == "fx-ApiFunction"
    assert body["memory"] == 256
    assert 0 < body["remaining_ms"] <= 3000
    assert dict(os.environ) == before, "the function's environment must not leak"


def test_functions_with_the_same_module_name_stay_apart(stack: Stack) -> None:
    api = host_for(stack, "ApiFunction")
    broken = host_for(stack, "BrokenFunction")
    assert api.invoke({"rawPath": "/files/plain"}) == {"plain": True}
    with pytest.raises(HandlerError) as caught:
        broken.invoke({"why": "testing"})
    assert caught.value.payload["errorType"] == "ValueError"
    assert caught.value.payload["errorMessage"] == "broken on purpose: testing"
    assert any("stream_app.py" in line for line in caught.value.payload["stackTrace"])
    assert not any("host.py" in line for line in caught.value.payload["stackTrace"])


def test_context_counts_down_from_the_timeout() -> None:
    ticks = iter([100.0, 101.5, 200.0])
    context = LambdaContext(
        "f", 128, "arn:aws:lambda:us-east-1:123456789012:function:f", 3, clock=lambda: next(ticks)
    )
    assert context.get_remaining_time_in_millis() == 1500
    assert context.get_remaining_time_in_millis() == 0
    assert context.log_group_name == "/aws/lambda/f"
    assert context.aws_request_id


# ---- the CLI's invoke ---------------------------------------------------------------------------------


def test_invoke_prints_the_handler_response(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = str(app_dir / "template.yaml")
    status = run_cli(["invoke", "ApiFunction", "-e", str(app_dir / "events" / "plain.json"), "-t", template])
    assert status == 0
    assert json.loads(capsys.readouterr().out) == {"plain": True}


def test_invoke_reports_handler_exceptions_like_sam(
    app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = str(app_dir / "template.yaml")
    status = run_cli(
        ["invoke", "BrokenFunction", "-e", str(app_dir / "events" / "crash.json"), "-t", template]
    )
    assert status == 1
    error = json.loads(capsys.readouterr().out)
    assert (error["errorType"], error["errorMessage"]) == ("ValueError", "broken on purpose: test")


@pytest.mark.parametrize(
    ("function", "event", "message"),
    [
        ("NoSuchFunction", "plain.json", "no function 'NoSuchFunction'"),
        ("ApiFunction", "missing.json", "cannot read event file"),
        ("ApiFunction", "malformed.json", "is not valid JSON"),
    ],
)
def test_invoke_usage_errors_are_one_line_and_exit_2(
    app_dir: Path, capsys: pytest.CaptureFixture[str], function: str, event: str, message: str
) -> None:
    argv = ["invoke", function, "-e", str(app_dir / "events" / event), "-t", str(app_dir / "template.yaml")]
    assert run_cli(argv) == 2
    output = capsys.readouterr().err
    assert message in output
    assert output.count("\n") == 1


def test_invoke_applies_an_env_vars_file(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env_file = app_dir / "env.json"
    env_file.write_text(json.dumps({"ApiFunction": {"GREETING": "overridden"}}))
    event = app_dir / "events" / "api.json"
    event.write_text(json.dumps({"rawPath": "/x"}))
    argv = [
        "invoke",
        "ApiFunction",
        "-e",
        str(event),
        "-n",
        str(env_file),
        "-t",
        str(app_dir / "template.yaml"),
    ]
    assert run_cli(argv) == 0
    assert json.loads(json.loads(capsys.readouterr().out)["body"])["greeting"] == "overridden"


def test_run_job_runs_the_training_entrypoint_with_the_training_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    template = tmp_path / "template.yaml"  # a copy, so no .local/cloud.json of a running cloud applies
    shutil.copy(DEFAULT_TEMPLATE, template)
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(argv: list[str], *, cwd: Path, env: dict[str, str], check: bool) -> Any:
        calls.append((argv, env))
        return subprocess.CompletedProcess(argv, 3)

    monkeypatch.setattr(subprocess, "run", fake_run)  # runner calls subprocess.run at call time
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert run_cli(["run-job", "-t", str(template), "training", "--", "train", "--quick"]) == 3
    assert run_cli(["run-job", "-t", str(template), "training"]) == 3
    (argv, env), (default_argv, _) = calls
    assert argv[1:] == ["-m", "training_job", "train", "--quick"]
    assert default_argv[1:] == ["-m", "training_job", "train"]  # the task definition's Command
    assert env["ARTIFACT_BUCKET"] == "movierec-local-artifacts-123456789012-us-east-1"
    assert env["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert env["POWERTOOLS_SERVICE_NAME"] == "training"


@pytest.fixture
def pipeline_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    """A copy of template.yaml (no running cloud's cloud.json applies), the fake job and its call log."""
    template = tmp_path / "template.yaml"
    shutil.copy(DEFAULT_TEMPLATE, template)
    (tmp_path / "infra" / "statemachine").mkdir(parents=True)
    shutil.copy(
        REPO_ROOT / "infra" / "statemachine" / "training.asl.json", tmp_path / "infra" / "statemachine"
    )
    script, log = write_fake_job(tmp_path)
    monkeypatch.setenv("FAKE_JOB_LOG", str(log))
    monkeypatch.delenv("FAKE_JOB_PLAN", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    return template, script, log


def pipeline_cli(template: Path, script: Path, *options: str) -> int:
    entrypoint = f"{sys.executable} {script}"
    return run_cli(["run-job", "-t", str(template), "pipeline", "--entrypoint", entrypoint, *options])


def test_run_job_pipeline_runs_the_template_state_machine_and_prints_the_execution(
    pipeline_template: tuple[Path, Path, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    template, script, log = pipeline_template
    assert pipeline_cli(template, script, "--run-id", "cli-1") == 0
    out, err = capfd.readouterr()
    summary = json.loads(out)
    assert (summary["name"], summary["status"]) == ("cli-1", "SUCCEEDED")
    assert [state["name"] for state in summary["states"]] == [
        "Plan",
        "PlanLatest",
        "Attribute",
        "Export",
        "Features",
        "Fit",
        "GateOutcome",
        "Publish",
        "Published",
    ]
    calls = job_calls(log)
    assert [call["argv"][:5] for call in calls] == [
        ["train", "--stage", stage, "--run-id", "cli-1"] for stage in ("export", "fit", "publish")
    ]
    assert calls[0]["env"]["ARTIFACT_BUCKET"] == "movierec-local-artifacts-123456789012-us-east-1"
    assert calls[0]["env"]["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert "execution cli-1 of movierec-local-training: starting at Plan" in err
    assert "Publish: succeeded" in err


def test_run_job_pipeline_notifies_the_local_topic_when_the_gate_keeps_the_model(
    aws: None,
    pipeline_template: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    template, script, _ = pipeline_template
    monkeypatch.setattr(jobs, "aws_client", lambda service, endpoint: boto3.client(service, "us-east-1"))
    sns, sqs = boto3.client("sns", "us-east-1"), boto3.client("sqs", "us-east-1")
    topic = sns.create_topic(Name="movierec-local-training")["TopicArn"]
    queue = sqs.create_queue(QueueName="notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    monkeypatch.setenv("FAKE_JOB_PLAN", json.dumps({"fit": [3]}))

    assert pipeline_cli(template, script, "--run-id", "cli-2") == 0
    assert json.loads(capfd.readouterr().out)["states"][-1]["name"] == "KeptPreviousModel"
    (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
    assert "Training run cli-2 was not published" in message["Body"]
    metrics = boto3.client("cloudwatch", "us-east-1").list_metrics(Namespace="MovieRec")["Metrics"]
    assert [(m["MetricName"], m["Dimensions"]) for m in metrics] == [
        ("GateRejected", [{"Name": "service", "Value": "pipeline"}])
    ]


def test_run_job_pipeline_exits_1_when_the_execution_fails(
    aws: None,
    pipeline_template: tuple[Path, Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    template, script, log = pipeline_template
    monkeypatch.setattr(jobs, "aws_client", lambda service, endpoint: boto3.client(service, "us-east-1"))
    boto3.client("sns", "us-east-1").create_topic(Name="movierec-local-training")
    monkeypatch.setenv("FAKE_JOB_PLAN", json.dumps({"export": [2]}))
    assert pipeline_cli(template, script, "--max-retry-delay", "0") == 1
    summary = json.loads(capfd.readouterr().out)
    assert (summary["status"], summary["error"]) == ("FAILED", "TrainingFailed")
    assert summary["name"].startswith("local-")
    assert [call["stage"] for call in job_calls(log)] == ["export", "export"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--input", "{nope"], "--input is not valid JSON"),
        (["--state-machine", "Nope"], "no state machine 'Nope'"),
        (["--run-id", "two words"], "execution name"),
    ],
)
def test_run_job_pipeline_usage_errors_exit_2(
    pipeline_template: tuple[Path, Path, Path],
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    template, script, log = pipeline_template
    assert pipeline_cli(template, script, *options) == 2
    assert message in capsys.readouterr().err
    assert not log.exists()


def test_run_job_pipeline_needs_a_state_machine(app_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["run-job", "-t", str(app_dir / "template.yaml"), "pipeline"]) == 2
    assert "template.yaml has no state machine to run" in capsys.readouterr().err


# ---- the Kinesis poller (moto in-process) -------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


class Stream:
    """The fixture stream on moto, a poller over it and the fixture consumer's memory."""

    def __init__(self, stack: Stack, state_dir: Path, *, clock: Any = None) -> None:
        self.kinesis = boto3.client("kinesis", region_name="us-east-1")
        self.sqs = boto3.client("sqs", region_name="us-east-1")
        self.source = stack.kinesis_sources("StreamFunction")[0]
        assert self.source.on_failure_arn is not None
        queue_name = self.source.on_failure_arn.rsplit(":", 1)[-1]
        self.queue_url = self.sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        self.kinesis.create_stream(StreamName=self.source.stream_name, ShardCount=1)
        self.host = host_for(stack, "StreamFunction")
        self.log: list[str] = []
        self.state_dir = state_dir
        self.clock = clock

    def poller(self) -> KinesisPoller:
        extra = {"clock": self.clock} if self.clock else {}
        return KinesisPoller(
            self.source,
            self.host.invoke,
            kinesis=self.kinesis,
            sqs=self.sqs,
            state_dir=self.state_dir,
            log=self.log.append,
            **extra,
        )

    def put(self, *bodies: dict[str, Any]) -> None:
        for body in bodies:
            self.kinesis.put_record(
                StreamName=self.source.stream_name, Data=json.dumps(body).encode(), PartitionKey="p"
            )

    @property
    def app(self) -> Any:
        return self.host.module

    def dead_letters(self) -> list[dict[str, Any]]:
        messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        return [json.loads(m["Body"]) for m in messages]


@pytest.fixture
def stream(aws: None, stack: Stack, tmp_path: Path) -> Stream:
    return Stream(stack, tmp_path / "state")


def ids(*numbers: int) -> list[str]:
    return [str(n) for n in numbers]


def test_poller_delivers_the_kinesis_event_shape(stream: Stream) -> None:
    stream.put({"id": 1})
    captured: list[dict[str, Any]] = []

    def capture(event: dict[str, Any]) -> Any:
        captured.append(event)
        return None

    poller = stream.poller()
    poller.invoke = capture
    poller.drain()
    ((record,),) = (event["Records"] for event in captured)
    assert set(record) == {
        "kinesis",
        "eventSource",
        "eventVersion",
        "eventID",
        "eventName",
        "invokeIdentityArn",
        "awsRegion",
        "eventSourceARN",
    }
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventName"] == "aws:kinesis:record"
    assert record["eventVersion"] == "1.0"
    assert record["awsRegion"] == "us-east-1"
    assert record["eventSourceARN"] == stream.source.stream_arn
    assert record["eventID"] == f"shardId-000000000000:{record['kinesis']['sequenceNumber']}"
    assert record["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert record["kinesis"]["partitionKey"] == "p"
    assert json.loads(base64.b64decode(record["kinesis"]["data"])) == {"id": 1}
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)


def test_drain_processes_in_batches_and_checkpoints_across_pollers(stream: Stream) -> None:
    stream.put(*({"id": n} for n in range(1, 7)))
    stats = stream.poller().drain()
    assert stream.app.invocations == [ids(1, 2, 3, 4), ids(5, 6)]  # BatchSize 4
    assert (stats.invocations, stats.records_processed, stats.retries) == (2, 6, 0)
    checkpoint = json.loads(next((stream.state_dir / "kinesis").glob("*.json")).read_text())
    assert checkpoint["shards"]["shardId-000000000000"]
    stream.put({"id": 7})
    again = stream.poller().drain()  # a new poller resumes from the saved checkpoint
    assert stream.app.invocations[-1] == ids(7)
    assert again.records_processed == 1
    assert stream.app.processed == ids(1, 2, 3, 4, 5, 6, 7)


def test_batch_item_failures_redeliver_from_the_first_failed_record(stream: Stream) -> None:
    stream.put({"id": 1}, {"id": 2, "fail": 1}, {"id": 3}, {"id": 4, "fail": 2})
    stats = stream.poller().drain()
    # Both fail at first: the checkpoint stops before the lower (2) and 2.. is delivered again;
    # then 4 fails once more and only 4 is redelivered.
    assert stream.app.invocations == [ids(1, 2, 3, 4), ids(2, 3, 4), ids(4)]
    assert stream.app.processed == ids(1, 2, 3, 4)
    assert (stats.partial_failures, stats.retries, stats.records_dead_lettered) == (2, 2, 0)


def test_records_that_keep_failing_go_to_the_on_failure_destination(stream: Stream) -> None:
    stream.put({"id": 1}, {"id": 2, "fail": 99}, {"id": 3})
    stats = stream.poller().drain()
    # MaximumRetryAttempts 2: the first delivery of 2 and two retries, then its batch is dead-lettered.
    assert stream.app.deliveries["2"] == 3
    assert stats.records_dead_lettered == 2  # 2 and 3: the rest of the failing batch
    (message,) = stream.dead_letters()
    info = message["KinesisBatchInfo"]
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(":function:StreamFunction")
    assert (info["batchSize"], info["shardId"], info["streamArn"]) == (
        2,
        "shardId-000000000000",
        stream.source.stream_arn,
    )
    stream.put({"id": 4})
    stream.poller().drain()
    assert stream.app.invocations[-1] == ids(4), "the shard moved past the dead-lettered records"


def test_function_errors_bisect_the_batch_to_isolate_the_poison_record(stream: Stream) -> None:
    stream.put({"id": 1}, {"id": 2}, {"id": 3, "crash": 99}, {"id": 4})
    stats = stream.poller().drain()
    assert stream.app.invocations[:3] == [ids(1, 2, 3, 4), ids(1, 2), ids(3, 4)]
    assert sorted(stream.app.processed) == ids(1, 2, 4)
    assert stats.bisections == 2
    (message,) = stream.dead_letters()
    assert message["KinesisBatchInfo"]["batchSize"] == 1
    assert message["responseContext"]["functionError"] == "Unhandled"


def test_a_transient_crash_succeeds_on_retry(stream: Stream) -> None:
    stream.put({"id": 1, "crash": 1})
    stats = stream.poller().drain()
    assert stream.app.processed == ids(1)
    assert (stats.function_errors, stats.retries, stats.records_dead_lettered) == (1, 1, 0)


def test_invalid_item_identifiers_fail_the_whole_batch(stream: Stream, stack: Stack) -> None:
    stream.put({"id": 1}, {"id": 2})
    answers = iter([{"batchItemFailures": [{"itemIdentifier": ""}]}, {"batchItemFailures": None}])
    seen: list[int] = []

    def invoke(event: dict[str, Any]) -> Any:
        seen.append(len(event["Records"]))
        return next(answers)

    poller = stream.poller()
    poller.invoke = invoke
    stats = poller.drain()
    assert seen == [2, 2]
    assert (stats.retries, stats.records_processed) == (1, 2)
    assert any("whole batch failed" in line for line in stream.log)


def test_records_older_than_the_maximum_age_skip_the_function(
    aws: None, stack: Stack, tmp_path: Path
) -> None:
    late = Stream(stack, tmp_path / "state", clock=lambda: 4_102_444_800.0)  # year 2100
    late.put({"id": 1}, {"id": 2})
    stats = late.poller().drain()
    assert stats.invocations == 0
    assert stats.records_dead_lettered == 2
    (message,) = late.dead_letters()
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"


def test_a_recreated_stream_starts_from_the_beginning_again(stream: Stream) -> None:
    stream.put({"id": 1})
    stream.poller().drain()
    stream.kinesis.delete_stream(StreamName=stream.source.stream_name)
    stream.kinesis.create_stream(StreamName=stream.source.stream_name, ShardCount=1)
    stream.put({"id": 2})
    stream.poller().drain()
    assert stream.app.invocations == [ids(1), ids(2)]


def test_poller_needs_the_stream_to_exist(aws: None, stack: Stack, tmp_path: Path) -> None:
    source = stack.kinesis_sources("StreamFunction")[0]
    with pytest.raises(UsageError, match="does not exist"):
        KinesisPoller(source, lambda e: None, kinesis=boto3.client("kinesis"), state_dir=tmp_path)


def test_poll_stats_add_up() -> None:
    total = PollStats(invocations=1, retries=2)
    total.add(PollStats(invocations=3, records_processed=4))
    assert (total.invocations, total.retries, total.records_processed) == (4, 2, 4)
    assert "4 records processed in 4 invocations" in total.summary()


# ---- sample events ------------------------------------------------------------------------------------


def test_committed_sample_events_are_up_to_date() -> None:
    for name, event in build().items():
        path = EVENTS_DIR / name
        assert path.is_file(), f"missing {path}; run python -m infra.local.sample_events"
        assert path.read_text() == render(event), f"{name} is stale; run python -m infra.local.sample_events"


def test_sample_stream_payloads_are_valid_events() -> None:
    kinesis = json.loads((EVENTS_DIR / "kinesis-batch.json").read_text())
    payloads = [base64.b64decode(r["kinesis"]["data"]) for r in kinesis["Records"]]
    assert len({parse_event(p).type for p in payloads}) == len(payloads)
    msk = json.loads((EVENTS_DIR / "msk-batch.json").read_text())
    (records,) = msk["records"].values()
    assert [base64.b64decode(r["value"]) for r in records] == payloads
    poison = json.loads((EVENTS_DIR / "kinesis-poison.json").read_text())
    valid = []
    for record in poison["Records"]:
        try:
            parse_event(base64.b64decode(record["kinesis"]["data"]))
            valid.append(True)
        except ValueError:
            valid.append(False)
    assert valid == [True, False, False, True]


def test_sample_http_events_match_template_routes() -> None:
    routes = {route.route_key: route for route in Stack.load().routes()}
    for path in EVENTS_DIR.glob("http-*.json"):
        event = json.loads(path.read_text())
        route = routes[event["routeKey"]]
        authorized = "authorizer" in event["requestContext"]
        assert authorized == (route.authorizer is not None and "anonymous" not in path.name), path.name
