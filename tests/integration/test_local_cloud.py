"""The local cloud's servers: ``up``/``down`` through the Python API, busy ports, restarts on one port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pymongo
import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from infra.local.cloud import CloudServers, CloudState, port_setting
from infra.local.errors import UsageError
from infra.local.servers import (
    MongoServer,
    RedisServer,
    ServerStartError,
    choose_mongo_backend,
    free_port,
    port_in_use,
    process_alive,
    prometheus_available,
    stop_detached,
)
from infra.local.template import LocalCloud

Document = dict[str, object]


@pytest.fixture
def startable_mongo_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests start their own MongoDB, so an external MONGODB_URI must not be picked."""
    monkeypatch.delenv("MONGODB_URI", raising=False)
    try:
        choose_mongo_backend(startable=True)
    except UsageError as error:
        pytest.skip(str(error))


@pytest.fixture
def cloud(tmp_path: Path, startable_mongo_backend: None) -> Iterator[CloudServers]:
    servers = CloudServers(tmp_path / ".local", monitoring=False)
    yield servers
    servers.down()  # whatever a failing test left running


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other process listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def mongo_client(uri: str) -> pymongo.MongoClient[Document]:
    return pymongo.MongoClient(uri, serverSelectionTimeoutMS=10_000)


def test_up_answers_on_every_url_and_down_stops_it(cloud: CloudServers) -> None:
    state, started = cloud.up()
    assert started
    assert {process["name"] for process in state.processes} == {"moto", "redis", "mongo"}
    assert CloudState.read(cloud.state_path) == state

    assert redis.Redis.from_url(state.redis_url).ping()
    client = mongo_client(state.mongodb_uri)
    assert client.admin.command("ping")["ok"] == 1.0
    client.close()
    s3 = boto3.client(
        "s3",
        endpoint_url=state.aws_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    s3.create_bucket(Bucket="local-cloud-test")
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == ["local-cloud-test"]
    assert "export MONGODB_URI=" + state.mongodb_uri in state.exports().splitlines()

    pids = [int(process["pid"]) for process in state.processes]
    assert len(cloud.down()) == 3
    assert not any(process_alive(pid) for pid in pids)
    assert not cloud.state_path.exists()
    assert cloud.down() == []  # idempotent


@pytest.mark.skipif(not prometheus_available(), reason="Prometheus is not installed (`make prometheus`)")
def test_up_starts_prometheus_scraping_the_api_and_the_pushgateway(
    tmp_path: Path, startable_mongo_backend: None
) -> None:
    api_target = f"127.0.0.1:{free_port()}"
    servers = CloudServers(tmp_path / ".local", api_target=api_target, monitoring=True)
    try:
        state, _ = servers.up()
        assert {process["name"] for process in state.processes} >= {"prometheus", "pushgateway"}
        assert state.prometheus_url
        assert state.pushgateway_url
        assert CloudState.read(servers.state_path) == state
        assert state.environment()["PUSHGATEWAY_URL"] == state.pushgateway_url
        assert LocalCloud.load(servers.state_dir, environ={}).pushgateway_url == state.pushgateway_url

        # The configuration Prometheus loaded (the targets API fills in asynchronously after start).
        with urllib.request.urlopen(f"{state.prometheus_url}/api/v1/status/config", timeout=5) as response:
            loaded = yaml.safe_load(json.load(response)["data"]["yaml"])
        scraped = {job["job_name"]: job["static_configs"][0]["targets"] for job in loaded["scrape_configs"]}
        assert scraped["movierec-api"] == [api_target]
        assert scraped["pushgateway"] == [state.pushgateway_url.removeprefix("http://")]

        registry = CollectorRegistry()
        Gauge("movierec_cloud_test", "pushed by the test", registry=registry).set(7)
        push_to_gateway(state.pushgateway_url.removeprefix("http://"), job="cloud-test", registry=registry)
        with urllib.request.urlopen(f"{state.pushgateway_url}/metrics", timeout=5) as response:
            assert 'movierec_cloud_test{instance="",job="cloud-test"} 7' in response.read().decode()
    finally:
        lines = servers.down()
    assert len(lines) == len(state.processes)
    assert not any(process_alive(int(process["pid"])) for process in state.processes)


def test_up_twice_reuses_the_running_cloud(cloud: CloudServers) -> None:
    first, started = cloud.up()
    again, started_again = CloudServers(
        cloud.state_dir, monitoring=False
    ).up()  # another process would do the same
    assert started
    assert not started_again
    assert again == first


def test_servers_outlive_the_process_that_started_them(tmp_path: Path, startable_mongo_backend: None) -> None:
    script = (
        "import sys; from pathlib import Path; from infra.local.cloud import CloudServers; "
        "CloudServers(Path(sys.argv[1])).up()"
    )
    state_dir = tmp_path / ".local"
    subprocess.run([sys.executable, "-c", script, str(state_dir)], check=True, timeout=300)
    servers = CloudServers(state_dir)
    try:
        state = servers.state()
        assert state is not None
        assert state.running()
        assert redis.Redis.from_url(state.redis_url).ping()
    finally:
        servers.down()


def test_mongo_data_survives_down_and_up(cloud: CloudServers) -> None:
    state, _ = cloud.up()
    client = mongo_client(state.mongodb_uri)
    client["persisted"]["items"].insert_one({"k": 1})
    client.close()
    cloud.down()

    state, started = cloud.up()
    assert started
    client = mongo_client(state.mongodb_uri)
    assert client["persisted"]["items"].count_documents({"k": 1}) == 1
    client.close()


def test_a_busy_port_is_a_clear_usage_error(cloud: CloudServers, busy_port: int) -> None:
    busy = CloudServers(cloud.state_dir, redis_port=busy_port)
    with pytest.raises(UsageError) as raised:
        busy.up()
    assert str(raised.value) == (
        f"port {busy_port} is in use by another process; stop it or set REDIS_PORT to a free port"
    )
    assert not busy.state_path.exists()  # nothing half-started is left behind

    with pytest.raises(UsageError, match=f"port {busy_port} is in use.*MONGO_PORT"):
        MongoServer(busy_port).start()


def test_one_port_for_two_servers_is_a_usage_error(cloud: CloudServers) -> None:
    port = free_port()
    with pytest.raises(UsageError, match="different ports, not"):
        CloudServers(cloud.state_dir, moto_port=port, redis_port=port).up()


def test_port_settings_come_from_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", "6380")
    assert port_setting(None, "REDIS_PORT") == 6380
    assert port_setting(7000, "REDIS_PORT") == 7000
    monkeypatch.delenv("MOTO_PORT", raising=False)
    assert port_setting(None, "MOTO_PORT") == 4566
    monkeypatch.setenv("MONGO_PORT", "mongo")
    with pytest.raises(UsageError, match="MONGO_PORT='mongo' is not a port number"):
        port_setting(None, "MONGO_PORT")


def test_redis_restarts_on_the_same_port_empty() -> None:
    with RedisServer() as server:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        port = server.port
        server.stop()
        assert not port_in_use(port)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        server.start()
        assert server.port == port
        assert client.ping()  # the client reconnects by itself
        assert client.get("k") is None  # no persistence: a restart is a fresh node


def test_mongo_restarts_on_the_same_port_with_its_data(startable_mongo_backend: None) -> None:
    with MongoServer(backend=choose_mongo_backend(startable=True)) as server:
        client = mongo_client(server.uri)
        client["restart"]["items"].insert_one({"k": 1})
        port = server.port
        server.stop()
        assert not port_in_use(port)
        server.start()
        assert server.port == port
        assert client["restart"]["items"].count_documents({}) == 1
        server.kill()  # a crash, not a clean shutdown
        server.start()
        assert client["restart"]["items"].count_documents({}) == 1
        client.close()


def test_a_server_that_cannot_start_quotes_its_output(tmp_path: Path) -> None:
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'FATAL: cannot open the config' >&2\nexit 3\n")
    fake.chmod(0o755)
    path = f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PATH", path)
        with pytest.raises(
            ServerStartError, match=r"(?s)exited with status 3.*FATAL: cannot open the config"
        ):
            RedisServer().start()


def test_stop_detached_leaves_an_unrelated_process_alone() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        # The pid is alive, but it is not running the command recorded for it: a reused pid.
        assert not stop_detached(sleeper.pid, ["redis-server", f"127.0.0.1:{free_port()}"])
        assert sleeper.poll() is None
    finally:
        assert sleeper.stdin is not None
        sleeper.stdin.close()
        sleeper.wait(timeout=30)


# ---- the shared fixtures (tests/conftest.py) ------------------------------------------------------------
def test_aws_fixtures_point_boto3_at_a_clean_emulator(aws_reset: str) -> None:
    assert os.environ["AWS_ENDPOINT_URL"] == aws_reset
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    sqs = boto3.client("sqs")  # endpoint, region and credentials all come from the environment
    assert sqs.list_queues().get("QueueUrls", []) == []
    sqs.create_queue(QueueName="left-behind")


def test_aws_reset_forgets_the_previous_tests_resources(aws_reset: str) -> None:
    assert boto3.client("sqs").list_queues().get("QueueUrls", []) == []


def test_redis_client_starts_empty(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("left-behind", 1)


def test_redis_client_is_flushed_between_tests(redis_client: redis.Redis) -> None:
    assert redis_client.get("left-behind") is None


USED_DATABASES: list[str] = []


def test_mongo_database_name_is_fresh(mongo_uri: str, mongo_database_name: str) -> None:
    client = mongo_client(mongo_uri)
    assert mongo_database_name not in client.list_database_names()
    client[mongo_database_name]["items"].insert_one({"k": 1})
    USED_DATABASES.append(mongo_database_name)
    client.close()


def test_mongo_database_name_is_dropped_after_its_test(mongo_uri: str, mongo_database_name: str) -> None:
    client = mongo_client(mongo_uri)
    assert USED_DATABASES
    assert mongo_database_name not in USED_DATABASES
    assert not set(USED_DATABASES) & set(client.list_database_names())
    client.close()


def test_disposable_servers_restart_on_their_port(
    disposable_redis: RedisServer, disposable_mongo: MongoServer
) -> None:
    redis_port, mongo_port = disposable_redis.port, disposable_mongo.port
    disposable_redis.stop()
    disposable_mongo.stop()
    disposable_redis.start()
    disposable_mongo.start()
    assert (disposable_redis.port, disposable_mongo.port) == (redis_port, mongo_port)
    assert redis.Redis.from_url(disposable_redis.url).ping()
    assert mongo_client(disposable_mongo.uri).admin.command("ping")["ok"] == 1.0
