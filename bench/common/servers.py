"""The servers a benchmark uses: started privately, all at once, or reused where they already run."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from types import TracebackType

from infra.local.servers import MongoServer, MotoServer, RedisServer, choose_mongo_backend

AWS_REGION = "us-east-1"

# Environment variables that point a benchmark at servers that already run (``make up``) instead of
# starting private ones. MONGODB_URI is honoured through infra.local.servers.choose_mongo_backend.
REDIS_URL_VARIABLE = "BENCH_REDIS_URL"
AWS_ENDPOINT_VARIABLE = "BENCH_AWS_ENDPOINT_URL"


def fake_aws_environment() -> None:
    """Fake credentials and no profile: nothing a benchmark does can reach a real AWS account."""
    os.environ["AWS_DEFAULT_REGION"] = AWS_REGION
    os.environ["AWS_REGION"] = AWS_REGION
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.pop("AWS_PROFILE", None)


@dataclass
class Servers:
    """Where the servers a benchmark uses answer; ``redis_server`` is set when we own Redis."""

    redis_url: str = ""
    mongo_uri: str = ""
    aws_endpoint: str = ""
    mongo_backend: str = ""
    redis_server: RedisServer | None = None
    started: list[str] = field(default_factory=list)


class BenchServers(AbstractContextManager["Servers"]):
    """Start the servers a benchmark needs, all at once, and stop them afterwards.

    Servers are launched together and then awaited, so the slow ones (moto's import, the MongoDB-wire
    server) start in parallel. ``BENCH_REDIS_URL``, ``MONGODB_URI`` and ``BENCH_AWS_ENDPOINT_URL``
    reuse servers that already run (``make up``) and skip the start-up. ``own_redis`` always starts a
    private Redis, for benchmarks that stop it (the snapshot tier).
    """

    def __init__(
        self, *, redis: bool = True, mongo: bool = False, aws: bool = False, own_redis: bool = False
    ) -> None:
        self._want_redis = redis
        self._want_mongo = mongo
        self._want_aws = aws
        self._own_redis = own_redis
        self._stack = ExitStack()

    def __enter__(self) -> Servers:
        servers = Servers()
        pending: list[RedisServer | MongoServer | MotoServer] = []
        try:
            if self._want_redis:
                reuse = os.environ.get(REDIS_URL_VARIABLE)
                if reuse and not self._own_redis:
                    servers.redis_url = reuse
                else:
                    servers.redis_server = RedisServer()
                    pending.append(servers.redis_server)
            if self._want_mongo:
                backend = choose_mongo_backend()
                servers.mongo_backend = backend
                mongo = MongoServer(backend=backend)
                if backend == "external":
                    servers.mongo_uri = mongo.uri
                else:
                    pending.append(mongo)
                    servers.mongo_uri = mongo.uri
            if self._want_aws:
                fake_aws_environment()
                reuse = os.environ.get(AWS_ENDPOINT_VARIABLE)
                if reuse:
                    servers.aws_endpoint = reuse
                else:
                    moto = MotoServer()
                    pending.append(moto)
                    servers.aws_endpoint = moto.url
                os.environ["AWS_ENDPOINT_URL"] = servers.aws_endpoint
            for server in pending:
                self._stack.callback(server.close)
                server.launch()
            for server in pending:
                server.wait_ready()
                servers.started.append(server.name)
        except BaseException:
            self._stack.close()
            raise
        if servers.redis_server is not None:
            servers.redis_url = servers.redis_server.url
        return servers

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()
