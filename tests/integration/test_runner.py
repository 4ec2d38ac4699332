"""The local runner against real servers: bootstrap and the poller on moto in server mode, start-api
over real sockets, and ``python -m infra.local`` as a process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from infra.local import runner
from infra.local.__main__ import main as run_cli
from infra.local.apigw import HttpApiServer, local_jwt
from infra.local.bootstrap import bootstrap
from infra.local.errors import UsageError
from infra.local.template import DEFAULT_TEMPLATE
from tests.unit.statemachine_support import write_fake_job

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_APP = REPO_ROOT / "tests" / "fixtures" / "runner_app"
FIXTURE_ISSUER, FIXTURE_AUDIENCE = "https://issuer.example", "fixture"  # its template's JwtConfiguration


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    target = tmp_path / "app"
    shutil.copytree(FIXTURE_APP, target)
    return target


def client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")  # type: ignore[call-overload]


# ---- bootstrap ----------------------------------------------------------------------------------------


def test_bootstrap_creates_what_the_template_names_and_is_idempotent(aws_reset: str) -> None:
    first = bootstrap(
        aws_reset, DEFAULT_TEMPLATE, secret_values={"MongoDbSecret": "mongodb://db.local:27017/x"}
    )
    second = bootstrap(aws_reset, DEFAULT_TEMPLATE)
    assert first == second
    summary = client("kinesis", aws_reset).describe_stream_summary(StreamName=first.stream_name)
    assert summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
    assert summary["StreamDescriptionSummary"]["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    s3 = client("s3", aws_reset)
    for bucket in (first.bucket_name, first.dead_letter_bucket_name):
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert first.dead_letter_queue_url is not None
    assert first.dead_letter_queue_url.endswith(f"/123456789012/{first.dead_letter_queue_name}")
    secrets = client("secretsmanager", aws_reset)
    # The second run kept the value the first one set.
    mongo = secrets.get_secret_value(SecretId=first.mongodb_secret_name)["SecretString"]
    assert mongo == "mongodb://db.local:27017/x"
    assert secrets.get_secret_value(SecretId=first.redis_auth_secret_name)["SecretString"]
    topics = {t["TopicArn"].rsplit(":", 1)[-1] for t in client("sns", aws_reset).list_topics()["Topics"]}
    assert topics >= {"movierec-local-alarms", "movierec-local-training"}
    assert set(first.topics) == {"movierec-local-alarms", "movierec-local-training"}


def test_bootstrap_reports_an_unreachable_endpoint_in_one_line() -> None:
    with pytest.raises(UsageError, match=r"cannot reach http://127\.0\.0\.1:9"):
        bootstrap("http://127.0.0.1:9", DEFAULT_TEMPLATE)


# ---- poll --until-idle --------------------------------------------------------------------------------


def test_poll_until_idle_drains_the_stream_through_the_template_function(
    aws_reset: str, app_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = app_dir / "template.yaml"
    resources = bootstrap(aws_reset, template)
    kinesis = client("kinesis", aws_reset)
    for body in ({"id": 1}, {"id": 2, "fail": 99}, {"id": 3}):
        kinesis.put_record(StreamName=resources.stream_name, Data=json.dumps(body).encode(), PartitionKey="k")

    assert run_cli(["poll", "--until-idle", "-t", str(template)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["records_processed"] == 1
    assert stats["records_dead_lettered"] == 2
    checkpoints = list((app_dir / ".local" / "kinesis").glob("*--StreamFunction.json"))
    assert len(checkpoints) == 1

    messages = client("sqs", aws_reset).receive_message(QueueUrl=resources.dead_letter_queue_url)["Messages"]
    assert json.loads(messages[0]["Body"])["KinesisBatchInfo"]["batchSize"] == 2

    kinesis.put_record(StreamName=resources.stream_name, Data=b'{"id": 4}', PartitionKey="k")
    assert run_cli(["poll", "--until-idle", "--batch-size", "1", "-t", str(template)]) == 0
    assert json.loads(capsys.readouterr().out)["records_processed"] == 1


def test_poll_without_a_stream_says_to_start_the_cloud(aws_reset: str, app_dir: Path) -> None:
    assert run_cli(["poll", "--until-idle", "-t", str(app_dir / "template.yaml")]) == 2


# ---- run-job pipeline ---------------------------------------------------------------------------------


@pytest.fixture
def pipeline_stack(aws_reset: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The real template (a copy) bootstrapped on moto, with the training topic feeding a queue."""
    template = tmp_path / "template.yaml"
    shutil.copy(DEFAULT_TEMPLATE, template)
    shutil.copytree(REPO_ROOT / "infra" / "statemachine", tmp_path / "infra" / "statemachine")
    script, log = write_fake_job(tmp_path)
    monkeypatch.setenv("FAKE_JOB_LOG", str(log))
    resources = bootstrap(aws_reset, template)
    sns, sqs = client("sns", aws_reset), client("sqs", aws_reset)
    topic = f"arn:aws:sns:us-east-1:123456789012:{resources.stack_name}-training"
    queue = sqs.create_queue(QueueName="training-notices")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
    )
    return {"template": template, "script": script, "log": log, "queue": queue, "endpoint": aws_reset}


def run_pipeline(stack: dict[str, Any], *options: str) -> int:
    entrypoint = f"{sys.executable} {stack['script']}"
    return run_cli(
        ["run-job", "-t", str(stack["template"]), "pipeline", "--entrypoint", entrypoint, *options]
    )


def notices(stack: dict[str, Any]) -> list[str]:
    response = client("sqs", stack["endpoint"]).receive_message(
        QueueUrl=stack["queue"], MaxNumberOfMessages=10
    )
    return [message["Body"] for message in response.get("Messages", [])]


def test_run_job_pipeline_gate_rejection_notifies_the_topic_and_records_the_metric(
    pipeline_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_JOB_PLAN", json.dumps({"fit": [3]}))
    assert run_pipeline(pipeline_stack, "--run-id", "it-1") == 0
    summary = json.loads(capfd.readouterr().out)
    assert (summary["status"], summary["states"][-1]["name"]) == ("SUCCEEDED", "KeptPreviousModel")
    (body,) = notices(pipeline_stack)
    assert body.startswith("Training run it-1 was not published")
    cloudwatch = client("cloudwatch", pipeline_stack["endpoint"])
    (metric,) = cloudwatch.list_metrics(Namespace="MovieRec", MetricName="GateRejected")["Metrics"]
    assert metric["Dimensions"] == [{"Name": "service", "Value": "pipeline"}]
    calls = [json.loads(line) for line in pipeline_stack["log"].read_text().splitlines()]
    assert [call["stage"] for call in calls] == ["attribute", "export", "features", "fit"]  # attribute first
    assert {call["env"]["AWS_ENDPOINT_URL"] for call in calls} == {pipeline_stack["endpoint"]}


def test_run_job_pipeline_failure_is_notified_and_exits_1(
    pipeline_stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_JOB_PLAN", json.dumps({"publish": [1]}))
    assert run_pipeline(pipeline_stack, "--run-id", "it-2", "--max-retry-delay", "0") == 1
    assert json.loads(capfd.readouterr().out)["error"] == "TrainingFailed"
    (body,) = notices(pipeline_stack)
    assert body.startswith("Training run it-2 failed: ")


# ---- start-api ----------------------------------------------------------------------------------------


@pytest.fixture
def api(app_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing here calls AWS
    app = runner.LocalApp(app_dir / "template.yaml")
    server = HttpApiServer(app.gateway(), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_start_api_serves_public_and_protected_routes(api: str) -> None:
    public = requests.get(f"{api}/public?x=1", timeout=10)
    assert public.status_code == 201
    assert public.headers["x-fixture"] == "yes"
    event = public.json()["event"]
    assert event["routeKey"] == "GET /public"
    assert event["queryStringParameters"] == {"x": "1"}
    assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"

    assert requests.get(f"{api}/items/5", timeout=10).status_code == 401
    bad = requests.get(f"{api}/items/5", headers={"Authorization": "Bearer not.a.jwt"}, timeout=10)
    assert (bad.status_code, bad.json()) == (401, {"message": "Unauthorized"})

    foreign = local_jwt({"sub": "user-7"})  # template.yaml's issuer and audience, not this app's
    refused = requests.get(f"{api}/items/5", headers={"Authorization": f"Bearer {foreign}"}, timeout=10)
    assert (refused.status_code, refused.headers["www-authenticate"]) == (401, "Bearer")

    token = local_jwt({"sub": "user-7"}, issuer=FIXTURE_ISSUER, audience=FIXTURE_AUDIENCE)
    good = requests.get(f"{api}/items/5", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert good.status_code == 201
    event = good.json()["event"]
    assert event["pathParameters"] == {"item_id": "5"}
    assert event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "user-7"
    # The exact route wins over the path variable, and it is public.
    assert requests.get(f"{api}/items/latest", timeout=10).json()["event"]["routeKey"] == "GET /items/latest"


def test_start_api_translates_responses_and_errors(api: str) -> None:
    missing = requests.get(f"{api}/nowhere", timeout=10)
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})
    binary = requests.get(f"{api}/files/binary", timeout=10)
    assert binary.content == b"\x00\x01\x02"
    assert binary.headers["content-type"] == "application/octet-stream"
    assert binary.cookies.get("a") == "1"
    assert requests.get(f"{api}/files/plain", timeout=10).json() == {"plain": True}
    boom = requests.delete(f"{api}/files/boom", timeout=10)
    assert (boom.status_code, boom.json()) == (500, {"message": "Internal Server Error"})
    fixture_token = local_jwt({"sub": "1"}, issuer=FIXTURE_ISSUER, audience=FIXTURE_AUDIENCE)
    posted = requests.post(
        f"{api}/echo",
        json={"a": 1},
        headers={"Authorization": f"Bearer {fixture_token}"},
        timeout=10,
    )
    assert posted.json()["event"]["body"] == '{"a": 1}'
    preflight = requests.options(
        f"{api}/echo",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"


def test_start_api_on_a_busy_port_is_a_usage_error(app_dir: Path) -> None:
    blocker = HttpApiServer(runner.LocalApp(app_dir / "template.yaml").gateway(), "127.0.0.1", 0)
    try:
        port = str(blocker.server_address[1])
        assert run_cli(["start-api", "--port", port, "-t", str(app_dir / "template.yaml")]) == 2
    finally:
        blocker.server_close()


# ---- as a process -------------------------------------------------------------------------------------


def test_python_m_infra_local_invoke_exit_statuses(app_dir: Path) -> None:
    def invoke(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "infra.local", "invoke", *argv, "-t", str(app_dir / "template.yaml")]
        return subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
        )

    ok = invoke("ApiFunction", "-e", str(app_dir / "events" / "plain.json"))
    assert (ok.returncode, json.loads(ok.stdout)) == (0, {"plain": True})
    crashed = invoke("BrokenFunction", "-e", str(app_dir / "events" / "crash.json"))
    assert crashed.returncode == 1
    assert json.loads(crashed.stdout)["errorType"] == "ValueError"
    unknown = invoke("Nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().count("\n") == 0
    assert "no function 'Nope'" in unknown.stderr
    malformed = invoke("ApiFunction", "-e", str(app_dir / "events" / "malformed.json"))
    assert (malformed.returncode, malformed.stdout) == (2, "")
