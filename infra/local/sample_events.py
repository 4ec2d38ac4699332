"""The canonical sample events in ``events/``, generated offline as ``sam local generate-event`` would.

The payloads are real movierec events (validated by ``movierec.events``), wrapped in the exact shapes
Lambda delivers: a Kinesis batch, an MSK (Kafka) batch and API Gateway HTTP API 2.0 requests for every
route of template.yaml. ``python -m infra.local.sample_events`` rewrites them; ``--check`` fails when a
committed file is stale. Everything is fixed (ids, times, sequence numbers), so output is reproducible.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from infra.local.apigw import HttpRequest, http_api_event, match_route
from infra.local.kinesis import StreamRecord, kinesis_event
from infra.local.template import ACCOUNT_ID, DEFAULT_TEMPLATE, LOCAL_API_ID, REGION, REPO_ROOT, Stack
from movierec.events import EVENT_ADAPTER, Event, dump_event

EVENTS_DIR = REPO_ROOT / "events"
BASE_TIME = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
SHARD_ID = "shardId-000000000000"
FIRST_SEQUENCE = 49_656_859_430_211_876_438_219_775_452_617_325_867_437_091_843_375_497_218
MSK_CLUSTER_ARN = (
    f"arn:aws:kafka:{REGION}:{ACCOUNT_ID}:cluster/movierec/6c5b3f4e-1d2a-4e4b-9a0f-3d2c1b0a9f8e-1"
)
MSK_TOPIC = "movierec-events"
USER_ID = "42"
REGION_NAME = "eu-west"


def _event_id(n: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"https://movierec.example/sample-events/{n}")


def _event(n: int, **fields: Any) -> Event:
    document = {
        "event_id": str(_event_id(n)),
        "occurred_at": (BASE_TIME + timedelta(seconds=30 * n)).isoformat(),
    }
    return EVENT_ADAPTER.validate_python(document | fields)


def sample_events() -> list[Event]:
    """One of each interaction a new user produces, in the order a client would send them."""
    user = {"user_id": USER_ID}
    return [
        _event(0, type="signup", **user, region=REGION_NAME, country="IE", locale="en-IE"),
        _event(
            1,
            type="movie_upsert",
            movie_id=1,
            title="Toy Story (1995)",
            genres=["Animation", "Comedy"],
            year=1995,
        ),
        _event(
            2,
            type="impression",
            **user,
            recommendation_id="rec-0001",
            movie_ids=[1, 260, 318],
            source="popular",
        ),
        _event(3, type="click", **user, movie_id=1, recommendation_id="rec-0001", position=0),
        _event(4, type="watch", **user, movie_id=1, seconds_watched=4_860, completion=0.99),
        _event(5, type="rating", **user, movie_id=1, rating=4.5),
        _event(6, type="add_to_list", **user, movie_id=260),
    ]


def _partition_key(event: Event) -> str:
    return str(getattr(event, "user_id", None) or f"movie-{getattr(event, 'movie_id', 0)}")


def _records(payloads: list[tuple[str, bytes]]) -> list[StreamRecord]:
    return [
        StreamRecord(
            partition_key=key,
            sequence_number=str(FIRST_SEQUENCE + 1_000 * n),
            data=data,
            approximate_arrival=BASE_TIME.timestamp() + 30 * n + 0.25,
        )
        for n, (key, data) in enumerate(payloads)
    ]


def _kinesis(stack: Stack, payloads: list[tuple[str, bytes]]) -> dict[str, Any]:
    source = stack.kinesis_sources()[0]
    spec = stack.function(source.function_id)
    return kinesis_event(
        _records(payloads), shard_id=SHARD_ID, stream_arn=source.stream_arn, invoke_identity_arn=spec.role_arn
    )


def _msk(payloads: list[tuple[str, bytes]]) -> dict[str, Any]:
    content_type = [int(byte) for byte in b"application/json"]
    records = [
        {
            "topic": MSK_TOPIC,
            "partition": 0,
            "offset": 100 + n,
            "timestamp": int((BASE_TIME.timestamp() + 30 * n) * 1000),
            "timestampType": "CREATE_TIME",
            "key": base64.b64encode(key.encode()).decode("ascii"),
            "value": base64.b64encode(data).decode("ascii"),
            "headers": [{"content-type": content_type}],
        }
        for n, (key, data) in enumerate(payloads)
    ]
    return {
        "eventSource": "aws:kafka",
        "eventSourceArn": MSK_CLUSTER_ARN,
        "bootstrapServers": (
            "b-1.movierec.abc123.c2.kafka.us-east-1.amazonaws.com:9098,"
            "b-2.movierec.abc123.c2.kafka.us-east-1.amazonaws.com:9098"
        ),
        "records": {f"{MSK_TOPIC}-0": records},
    }


def jwt_claims() -> dict[str, Any]:
    """An access token's claims as Cognito issues them (the default issuer of template.yaml)."""
    issued = int(BASE_TIME.timestamp())
    return {
        "sub": USER_ID,
        "iss": f"https://cognito-idp.{REGION}.amazonaws.com/{REGION}_EXAMPLE",
        "client_id": "4example0client0id0movierec",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin",
        "auth_time": issued,
        "iat": issued,
        "exp": issued + 3600,
        "jti": str(_event_id(99)),
        "username": "user-42",
    }


def example_jwt(claims: dict[str, Any]) -> str:
    """The token's shape in a sample event: what the authorizer already verified, so the signature is a
    placeholder (a generated key would make the committed files differ on every machine)."""

    def part(document: dict[str, Any]) -> str:
        raw = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    header = {"alg": "RS256", "kid": "example", "typ": "JWT"}
    return f"{part(header)}.{part(claims)}.example-signature"


def _http(stack: Stack, name: str, path: str, query: str, *, authorized: bool) -> dict[str, Any]:
    headers = [
        ("accept", "application/json"),
        ("host", f"{LOCAL_API_ID}.execute-api.{REGION}.amazonaws.com"),
        ("user-agent", "curl/8.5.0"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-proto", "https"),
    ]
    claims = jwt_claims() if authorized else None
    if claims is not None:
        headers.insert(1, ("authorization", f"Bearer {example_jwt(claims)}"))
    request = HttpRequest("GET", path, query, headers, source_ip="203.0.113.7")
    matched = match_route(stack.routes(), "GET", path)
    if matched is None:
        raise ValueError(f"{path} matches no route of the template")
    return http_api_event(
        request,
        matched.route,
        matched.path_parameters,
        claims=claims,
        request_id=base64.b64encode(_event_id(200 + len(name)).bytes[:11]).decode("ascii"),
        now=BASE_TIME + timedelta(minutes=5),
        domain_name=f"{LOCAL_API_ID}.execute-api.{REGION}.amazonaws.com",
    )


def build(template_path: Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """File name -> event, for every sample."""
    stack = Stack.load(template_path)
    events = sample_events()
    payloads = [(_partition_key(event), dump_event(event)) for event in events]
    poison = [
        payloads[0],
        ("pk-bad-json", b'{"event_id": "not json'),
        ("pk-bad-schema", json.dumps({"type": "rating", "user_id": USER_ID, "movie_id": -1}).encode()),
        payloads[5],
    ]
    return {
        "kinesis-batch.json": _kinesis(stack, payloads),
        "kinesis-poison.json": _kinesis(stack, poison),
        "msk-batch.json": _msk(payloads),
        "http-recommendations.json": _http(
            stack, "recommendations", "/v1/recommendations", "k=5", authorized=True
        ),
        "http-recommendations-anonymous.json": _http(
            stack, "recommendations-anon", "/v1/recommendations", "k=5", authorized=False
        ),
        "http-similar.json": _http(stack, "similar", "/v1/movies/1/similar", "k=5", authorized=True),
        "http-similar-anonymous.json": _http(
            stack, "similar-anon", "/v1/movies/1/similar", "k=5", authorized=False
        ),
        "http-popular.json": _http(
            stack, "popular", "/v1/popular", f"region={REGION_NAME}&k=5", authorized=False
        ),
        "http-health.json": _http(stack, "health", "/health", "", authorized=False),
    }


def render(event: Any) -> str:
    return json.dumps(event, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.sample_events", description=__doc__)
    parser.add_argument("directory", nargs="?", default=str(EVENTS_DIR))
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed event differs")
    args = parser.parse_args(argv)
    directory = Path(args.directory)
    stale = []
    for name, event in build().items():
        target = directory / name
        text = render(event)
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        directory.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        print(target)
    if stale:
        print(
            f"stale sample events: {', '.join(stale)}; run python -m infra.local.sample_events",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
