"""The serve benchmark's rig (``python -m bench.serve``): servers, the published population, the recommend
function imported with its environment, a caller per tier; and the timed rounds over it (the live tiers
interleaved with their baselines, then the Redis outages)."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import boto3
import redis
from aws_lambda_powertools.utilities.typing import LambdaContext as LambdaContextProtocol

from bench.common import Servers, Summary, interleave, measure, progress, summarize_ns
from bench.serve_population import Plan, Population, populate
from bench.serve_subjects import (
    SAMPLE_EVENT,
    TIERS,
    Caller,
    Handler,
    bare_resolver,
    check_sources,
    lambda_context,
    load_app,
    recommendation_event,
    served_label,
)
from infra.local.servers import RedisServer
from movierec import keys
from movierec.config import RecommendSettings
from movierec.stores.blobs import BlobStore
from movierec.stores.cache import RedisClient, connect_redis


@dataclass
class Rig:
    plan: Plan
    servers: Servers
    redis_server: RedisServer
    work_dir: Path
    setup_client: RedisClient
    population: Population
    context: LambdaContextProtocol
    callers: dict[str, Caller]
    online_served: dict[str, int]

    @property
    def has_online(self) -> bool:
        return self.online_served == {"online": len(self.population.users["online"])}

    @property
    def live_tiers(self) -> list[str]:
        return [t for t in TIERS if t != "snapshot" and (t != "online" or self.has_online)]


def build_rig(servers: Servers, plan: Plan, work_dir: Path) -> Rig:
    if servers.redis_server is None:
        raise RuntimeError("the serve benchmark stops Redis: it needs a Redis of its own")
    bucket = f"movierec-bench-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    # The fixture's own writes (bulk pipelines), not the subject: the serving path's 50 ms socket timeout
    # would fail a setup that a busy machine slows (seen once, "Timeout writing to socket").
    setup_settings = RecommendSettings(
        redis_url=servers.redis_url,
        artifact_bucket=bucket,
        redis_connect_timeout_ms=5_000,
        redis_socket_timeout_ms=5_000,
    )
    setup_client = connect_redis(setup_settings)
    population = populate(setup_client, BlobStore(bucket), plan, work_dir)
    progress(f"published version {population.version}; importing the recommend function")
    app = load_app(
        {
            "REDIS_URL": servers.redis_url,
            "ARTIFACT_BUCKET": bucket,
            "POPULARITY_SNAPSHOT_PATH": str(population.snapshot_path),
            "POWERTOOLS_SERVICE_NAME": "recommend",
            "POWERTOOLS_METRICS_NAMESPACE": "MovieRec",
        }
    )
    handler = cast(Handler, app.lambda_handler)
    context = lambda_context()
    template = json.loads(SAMPLE_EVENT.read_text())
    callers = {
        tier: Caller(handler, context, [recommendation_event(template, u) for u in population.users[tier]])
        for tier in TIERS
    }
    return Rig(
        plan=plan,
        servers=servers,
        redis_server=servers.redis_server,
        work_dir=work_dir,
        setup_client=setup_client,
        population=population,
        context=context,
        callers=callers,
        online_served=callers["online"].sources(),
    )


def time_live_tiers(rig: Rig) -> dict[str, Summary]:
    """The raw GET baseline, a bare Powertools resolver and every tier Redis serves, interleaved."""
    raw_client = redis.Redis.from_url(rig.servers.redis_url)
    version = rig.population.version
    raw_keys = [keys.recommendations(version, u) for u in rig.population.users["personalized"]]
    position = [0]

    def raw_get() -> object:
        key = raw_keys[position[0]]
        position[0] = (position[0] + 1) % len(raw_keys)
        return raw_client.get(key)

    bare = bare_resolver()
    bare_event = recommendation_event(json.loads(SAMPLE_EVENT.read_text()), "bare")
    cases: dict[str, Callable[[], object]] = {
        "raw_get": raw_get,
        "bare_powertools": lambda: bare(bare_event, rig.context),
    }
    cases |= {tier: rig.callers[tier] for tier in rig.live_tiers}
    progress(f"timing {', '.join(cases)}: {rig.plan.samples} interleaved samples each")
    samples = interleave(cases, samples=rig.plan.samples, warmup=rig.plan.warmup, block=10)
    raw_client.close()
    return {name: summarize_ns(values) for name, values in samples.items()}


def time_outages(rig: Rig) -> tuple[Summary, Summary, dict[str, dict[str, int]]]:
    """The snapshot tier: Redis stopped (connections refused), then a Redis that accepts but never
    answers (a listener on its port that reads nothing: a hung node, as during a failover)."""
    plan = rig.plan
    progress("stopping Redis: the snapshot tier")
    rig.redis_server.stop()
    time.sleep(1.1)  # past the recommender's 1 s version cache, so every request meets the outage
    served = {"snapshot": rig.callers["snapshot"].sources()}
    check_sources(rig.callers, ["snapshot"])
    stopped = summarize_ns(
        measure(rig.callers["snapshot"], samples=plan.snapshot_samples, warmup=plan.warmup)
    )
    progress(f"an unresponsive Redis: {plan.unresponsive_samples} requests")
    with socket.create_server(("127.0.0.1", rig.redis_server.port), backlog=1_024) as _silent:
        served["snapshot_redis_unresponsive"] = {served_label(rig.callers["snapshot"]()): 1}
        unresponsive = summarize_ns(measure(rig.callers["snapshot"], samples=plan.unresponsive_samples))
    return stopped, unresponsive, served
