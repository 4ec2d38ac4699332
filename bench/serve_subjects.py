"""What the serve benchmark measures (``python -m bench.serve``): the recommend function imported and called
as Lambda does, per tier, with the checks that each tier's users are answered by that tier; the bare
Powertools floor; and publication's writer against a raw pipelined ``SET``."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.typing import LambdaContext as LambdaContextProtocol
from pydantic import BaseModel

from bench.common import RedisTraffic, per_second, progress, ratio
from bench.serve_population import LIST_LENGTH, SEED, Plan, delete_keys, ranked
from infra.local.lambda_context import LambdaContext
from movierec import keys
from movierec.publication import MovieInfo, encode_items
from movierec.stores.cache import RedisClient
from training_job.stores.publication import PIPELINE_CHUNK, PublicationWriter

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_FILE = REPO_ROOT / "functions" / "recommend" / "app.py"
SAMPLE_EVENT = REPO_ROOT / "events" / "http-recommendations.json"
K = 10
TIERS = ("personalized", "online", "regional_popular", "global_popular", "snapshot")


# ---- the handler, in process ------------------------------------------------------------------------------

Handler = Callable[[dict[str, Any], LambdaContextProtocol], dict[str, Any]]


def load_app(environment: dict[str, str]) -> ModuleType:
    """Import functions/recommend/app.py as Lambda does: environment first, then module-level init."""
    os.environ.update(environment)
    name = "movierec_bench_recommend_app"
    spec = importlib.util.spec_from_file_location(name, APP_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {APP_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def lambda_context() -> LambdaContextProtocol:
    context = LambdaContext(
        function_name="movierec-bench-recommend",
        memory_limit_in_mb=1024,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:movierec-bench-recommend",
        timeout_s=5,
    )
    return cast(LambdaContextProtocol, context)  # infra.local's mirrors the runtime's attribute for attribute


def recommendation_event(template: dict[str, Any], user_id: str, k: int = K) -> dict[str, Any]:
    event = copy.deepcopy(template)
    event["rawQueryString"] = f"k={k}"
    event["queryStringParameters"] = {"k": str(k)}
    context = event["requestContext"]
    context["requestId"] = uuid.uuid4().hex[:16]
    context["timeEpoch"] = int(time.time() * 1000)
    context["authorizer"]["jwt"]["claims"]["sub"] = user_id
    return event


class Caller:
    """Calls the handler for a tier, cycling through that tier's users (events built in advance)."""

    def __init__(self, handler: Handler, context: LambdaContextProtocol, events: list[dict[str, Any]]):
        self._handler = handler
        self._context = context
        self._events = events
        self._next = 0

    def __call__(self) -> dict[str, Any]:
        event = self._events[self._next]
        self._next = (self._next + 1) % len(self._events)
        return self._handler(event, self._context)

    def sources(self) -> dict[str, int]:
        """One pass over every user: which tier answered, by count (untimed; a status other than 200
        counts as ``HTTP <status>``)."""
        served: dict[str, int] = {}
        for _ in self._events:
            label = served_label(self())
            served[label] = served.get(label, 0) + 1
        return served


def served_label(response: dict[str, Any]) -> str:
    """Which tier answered: the response's ``source``, marked when it came from the snapshot."""
    if response.get("statusCode") != 200:
        return f"HTTP {response.get('statusCode')}"
    body = json.loads(response["body"])
    return str(body["source"]) + (" (degraded)" if body.get("degraded") else "")


class _Pong(BaseModel):
    status: str
    items: list[int]


def bare_resolver() -> Handler:
    """A Powertools HTTP resolver with validation and one route that does nothing: the framework floor."""
    bare = APIGatewayHttpResolver(enable_validation=True)

    @bare.get("/v1/recommendations")
    def pong(k: int = 10) -> _Pong:
        return _Pong(status="ok", items=list(range(k)))

    def handler(event: dict[str, Any], context: LambdaContextProtocol) -> dict[str, Any]:
        return bare.resolve(event, context)

    return handler


# ---- tiers --------------------------------------------------------------------------------------------


def expected_source(tier: str) -> str:
    return "global_popular (degraded)" if tier == "snapshot" else tier


STRAY_ANSWERS_ALLOWED = 0.01
"""Share of a tier's users that may be answered by another tier in a check: on an overloaded machine a
Redis read can outlast the client's 200 ms timeout, and the chain rightly falls back to the snapshot."""


def check_sources(callers: dict[str, Caller], tiers: Sequence[str]) -> dict[str, dict[str, int]]:
    """Every user of every tier must be answered by that tier (all but a stray timeout or two);
    otherwise the timing means nothing. Returns the answers by tier, strays included."""
    seen = {tier: callers[tier].sources() for tier in tiers}
    for tier in tiers:
        wrong = {source: n for source, n in seen[tier].items() if source != expected_source(tier)}
        if sum(wrong.values()) > STRAY_ANSWERS_ALLOWED * sum(seen[tier].values()):
            raise RuntimeError(f"{tier} users were answered by {wrong}, not by {expected_source(tier)}")
        if wrong:
            progress(f"{tier}: {wrong} of {sum(seen[tier].values())} answered by another tier")
    return seen


def count_round_trips(callers: dict[str, Caller], tiers: Sequence[str], calls: int = 50) -> dict[str, float]:
    """Redis round trips per request for each tier, averaged over ``calls`` requests."""
    traffic = RedisTraffic()
    per_tier: dict[str, float] = {}
    for tier in tiers:
        with traffic.counting() as seen:
            for _ in range(calls):
                callers[tier]()
        per_tier[tier] = round(seen.round_trips / calls, 2)
    return per_tier


# ---- publication -------------------------------------------------------------------------------------


def publication_throughput(
    client: RedisClient, plan: Plan, catalogue: dict[int, MovieInfo]
) -> dict[str, Any]:
    rng = random.Random(SEED + 1)
    lists = [(f"pub{i}", ranked(rng, catalogue, LIST_LENGTH)) for i in range(plan.publish_users)]
    writer_ns: list[int] = []
    raw_ns: list[int] = []
    for round_index in range(plan.publish_rounds + 1):  # the first round warms up
        version = f"bench{round_index:03d}"
        writer = PublicationWriter(client, f"{version}w")
        started = time.perf_counter_ns()
        written = writer.put_recommendations(iter(lists))
        writer_elapsed = time.perf_counter_ns() - started
        if written != len(lists):
            raise RuntimeError(f"the writer reported {written} of {len(lists)} users")
        # The baseline gets the very bytes the writer stored, encoded beforehand (untimed).
        payloads = [(keys.recommendations(f"{version}r", user), encode_items(items)) for user, items in lists]
        started = time.perf_counter_ns()
        raw_pipelined_set(client, payloads)
        raw_elapsed = time.perf_counter_ns() - started
        check = client.get(keys.recommendations(f"{version}w", lists[-1][0]))
        if check != payloads[-1][1]:
            raise RuntimeError("the writer and the baseline stored different bytes")
        delete_keys(client, [keys.recommendations(f"{version}{side}", u) for u, _ in lists for side in "wr"])
        if round_index:
            writer_ns.append(writer_elapsed)
            raw_ns.append(raw_elapsed)
    writer_rate = per_second(len(lists) * len(writer_ns), sum(writer_ns))
    raw_rate = per_second(len(lists) * len(raw_ns), sum(raw_ns))
    return {
        "users": len(lists),
        "rounds": len(writer_ns),
        "list_bytes": len(encode_items(lists[0][1])),
        "publish_users_per_s": round(writer_rate, 1),
        "raw_set_users_per_s": round(raw_rate, 1),
        "publish_ratio": ratio(writer_rate, raw_rate),
    }


def raw_pipelined_set(client: RedisClient, payloads: Sequence[tuple[str, bytes]]) -> None:
    pipe = client.pipeline(transaction=False)
    for start in range(0, len(payloads), PIPELINE_CHUNK):
        for key, value in payloads[start : start + PIPELINE_CHUNK]:
            pipe.set(key, value)
        pipe.execute()
