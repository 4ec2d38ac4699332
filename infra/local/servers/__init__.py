"""Real servers as child processes: Redis (``redis``; a three-master Redis Cluster in
``redis_cluster``), MongoDB or a wire-compatible server (``mongo``), moto (``aws``) and
Prometheus with its Pushgateway (``prometheus``), on the lifecycle of ``process``. Tests use them on
free ports; ``python -m infra.local up`` uses them detached on fixed ports. ``mongoeco`` serves
mongoeco's wire server with our fixes to it, all in ``mongoeco_patches``.

Every module here imports only the standard library at module level: ``.venv-mongo`` (Python 3.13,
without our dependencies) imports this package to serve mongoeco. The names below are the interface.
"""

from infra.local.servers.aws import MotoServer, is_localstack, reset_aws_endpoint
from infra.local.servers.mongo import MongoBackend, MongoServer, choose_mongo_backend, mongo_backend_available
from infra.local.servers.process import (
    ChildServer,
    ServerStartError,
    accepts_connections,
    free_port,
    port_busy_message,
    port_in_use,
    process_alive,
    process_command_line,
    stop_detached,
)
from infra.local.servers.prometheus import PrometheusServer, PushgatewayServer, prometheus_available
from infra.local.servers.redis import RedisServer, find_redis_server
from infra.local.servers.redis_cluster import RedisClusterServer, find_redis_cli

__all__ = [
    "ChildServer",
    "MongoBackend",
    "MongoServer",
    "MotoServer",
    "PrometheusServer",
    "PushgatewayServer",
    "RedisClusterServer",
    "RedisServer",
    "ServerStartError",
    "accepts_connections",
    "choose_mongo_backend",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "is_localstack",
    "mongo_backend_available",
    "port_busy_message",
    "port_in_use",
    "process_alive",
    "process_command_line",
    "prometheus_available",
    "reset_aws_endpoint",
    "stop_detached",
]
