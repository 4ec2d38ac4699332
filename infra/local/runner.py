"""A docker-free ``sam local``: invoke, start-api and a Kinesis poller, driven by template.yaml.

``LocalApp`` (the template, the local cloud and the function hosts) is what every command starts from;
``infra/local/jobs.py`` adds run-job.

Functions run in this process (see ``infra/local/host.py``) with the environment the template gives
them, resolved for the local stack and pointed at the local cloud. docs/local-runner.md has the details
and where this differs from AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from infra.local.apigw import Cors, HttpApiGateway, HttpApiServer, local_jwt
from infra.local.bootstrap import aws_client
from infra.local.errors import UsageError
from infra.local.host import FunctionHost, FunctionHosts, HandlerError
from infra.local.kinesis import KinesisPoller, PollStats
from infra.local.metrics import LocalMetrics
from infra.local.served_log import ServedLogDelivery, s3_delivery
from infra.local.template import (
    DEFAULT_TEMPLATE,
    STACK_NAME,
    LocalCloud,
    Stack,
    local_environment,
    read_env_vars_file,
    state_dir_for,
)
from movierec.served import SERVED_LIST_KEY

POLL_INTERVAL_S = 1.0


# ---- shared plumbing -----------------------------------------------------------------------------------


class LocalApp:
    """The template, the local cloud and the function hosts: what every command starts from."""

    def __init__(
        self,
        template_path: Path = DEFAULT_TEMPLATE,
        *,
        stack_name: str = STACK_NAME,
        parameters: Mapping[str, str] | None = None,
        env_vars: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.template_path = template_path
        self.state_dir = state_dir_for(template_path)
        self.environ = dict(os.environ if environ is None else environ)
        self.cloud = LocalCloud.load(self.state_dir, self.environ)
        self.stack = Stack.load(
            template_path,
            stack_name=stack_name,
            parameters=parameters,
            endpoint_url=self.cloud.aws_endpoint_url,
        )
        self.env_vars = dict(env_vars or {})
        self.metrics = LocalMetrics()  # the functions' EMF metrics and the API's, served at /metrics
        self._served: ServedLogDelivery | None = None
        self.hosts = FunctionHosts(self.host)

    def host(self, function_id: str) -> FunctionHost:
        spec = self.stack.function(function_id)
        environment = local_environment(spec, self.cloud, environ=self.environ, overrides=self.env_vars)
        return FunctionHost(spec, environment, on_emf=self._on_emf)

    def flush_served_log(self) -> None:
        """Wait until the served-list records of every answer so far are in the bucket."""
        if self._served is not None:
            self._served.flush()

    def _on_emf(self, document: Mapping[str, Any]) -> None:
        """Each EMF document a function prints: to /metrics, and the served-list record to the bucket
        (the subscription filter and Firehose of template.yaml, see infra/local/served_log.py)."""
        self.metrics.observe_emf(document)
        if SERVED_LIST_KEY not in document:
            return
        if self._served is None:
            s3 = aws_client("s3", self.cloud.aws_endpoint_url)
            self._served = s3_delivery(s3, self.stack.local_resources().bucket_name)
        self._served.observe_emf(document)

    def invoke(self, function_id: str, event: Any) -> Any:
        return self.hosts.get(function_id).invoke(event)

    def gateway(self, *, log: Any = None) -> HttpApiGateway:
        routes = self.stack.routes()
        if not routes:
            raise UsageError(f"{self.template_path.name} has no HttpApi routes to serve")
        cors = self.stack.http_api_cors()

        def report(function_id: str, error: BaseException) -> None:
            detail = error.payload if isinstance(error, HandlerError) else {"errorMessage": str(error)}
            print(f"{function_id}: {json.dumps(detail)}", file=sys.stderr)

        return HttpApiGateway(
            routes,
            self.invoke,
            cors=Cors(**cors) if cors is not None else None,
            on_error=report,
        )

    def poller(self, function_id: str | None = None, *, batch_size: int | None = None) -> KinesisPoller:
        sources = self.stack.kinesis_sources(function_id)
        if not sources:
            where = function_id or self.template_path.name
            raise UsageError(f"{where} has no Kinesis event source")
        if len(sources) > 1:
            names = ", ".join(sorted({s.function_id for s in sources}))
            raise UsageError(f"several functions read Kinesis ({names}); pick one with --function")
        source = sources[0]
        if not source.enabled:
            print(
                f"note: {source.function_id}'s Kinesis mapping is disabled by the template's parameters",
                file=sys.stderr,
            )
        spec = self.stack.function(source.function_id)
        host = self.hosts.get(source.function_id)
        endpoint = self.cloud.aws_endpoint_url
        return KinesisPoller(
            source,
            host.invoke,
            kinesis=aws_client("kinesis", endpoint),
            sqs=aws_client("sqs", endpoint),
            state_dir=self.state_dir,
            function_arn=spec.arn,
            invoke_identity_arn=spec.role_arn,
            batch_size=batch_size,
        )


def _parameters(pairs: Sequence[str]) -> dict[str, str]:
    parameters = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise UsageError(f"--parameter-overrides takes Name=Value pairs, not {pair!r}")
        parameters[name] = value
    return parameters


def app_from_args(args: argparse.Namespace) -> LocalApp:
    env_vars = read_env_vars_file(Path(args.env_vars)) if getattr(args, "env_vars", None) else None
    return LocalApp(
        Path(args.template),
        stack_name=args.stack_name,
        parameters=_parameters(args.parameter_overrides or []),
        env_vars=env_vars,
    )


def read_event(path: str | None) -> Any:
    """The event for ``invoke``: a JSON file, ``-`` for stdin, or ``{}`` when none is given (as sam does)."""
    if path is None:
        return {}
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read event file {path}: {error.strerror}") from error
    try:
        return json.loads(text)
    except ValueError as error:
        raise UsageError(f"event file {path} is not valid JSON: {error}") from error


# ---- commands ---------------------------------------------------------------------------------------------


def invoke_command(args: argparse.Namespace) -> int:
    event = read_event(args.event)
    app = app_from_args(args)
    app.stack.function(args.function)  # an unknown name fails here, before anything loads
    try:
        result = app.invoke(args.function, event)
    except HandlerError as error:
        print(json.dumps(error.payload))
        return 1
    print(json.dumps(result, default=str))
    return 0


def start_api_command(args: argparse.Namespace) -> int:
    app = app_from_args(args)
    gateway = app.gateway()
    try:
        server = HttpApiServer(
            gateway,
            args.host,
            args.port,
            access_log=lambda line: print(line, file=sys.stderr),
            metrics=app.metrics,
        )
    except OSError as error:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port} ({error.strerror}); pick another with --port"
        ) from error
    print(
        f"Serving {len(gateway.routes)} routes of {app.template_path.name} on {server.url}", file=sys.stderr
    )
    for route in gateway.routes:
        access = "public" if route.authorizer is None else f"{route.authorizer_type} ({route.authorizer})"
        print(f"  {route.route_key:<40} -> {route.function_id} [{access}]", file=sys.stderr)
    for issuer, audience in sorted({(r.issuer, r.audience) for r in gateway.routes if r.issuer}):
        print(f"JWTs: issuer {issuer}, audience {' '.join(audience)}, local JWKS", file=sys.stderr)
    print(f"Prometheus metrics: {server.url}/metrics", file=sys.stderr)
    print("`python -m infra.local token` mints a token. Ctrl-C stops.", file=sys.stderr)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def token_command(args: argparse.Namespace) -> int:
    """Print a token the local API accepts, for the template's issuer and audience."""
    try:
        extra = json.loads(args.claims)
    except ValueError as error:
        raise UsageError(f"--claims is not valid JSON: {error}") from error
    if not isinstance(extra, dict):
        raise UsageError("--claims must be a JSON object")
    issuer, audience = app_from_args(args).stack.jwt_authorizer()
    claims = {"sub": args.sub, **extra}
    print(local_jwt(claims, ttl_s=args.ttl, issuer=issuer, audience=audience[0] if audience else ""))
    return 0


def poll_command(args: argparse.Namespace) -> int:
    app = app_from_args(args)
    poller = app.poller(args.function, batch_size=args.batch_size)
    if args.until_idle:
        stats = poller.drain()
        print(json.dumps(stats.__dict__))
        print(stats.summary(), file=sys.stderr)
        return 0
    print(
        f"Polling {poller.source.stream_name} for {poller.source.function_id}; Ctrl-C stops.", file=sys.stderr
    )
    total = PollStats()
    try:
        while True:
            stats = poller.drain()
            if stats.invocations:
                print(stats.summary(), file=sys.stderr)
            total.add(stats)
            time.sleep(args.interval)  # the mapping's polling cadence, not a synchronisation
    except KeyboardInterrupt:
        print(total.summary(), file=sys.stderr)
        return 0


# ---- registration ---------------------------------------------------------------------------------------


def common_options(parser: argparse.ArgumentParser, *, env_vars: bool = True) -> None:
    parser.add_argument("-t", "--template", default=str(DEFAULT_TEMPLATE), help="default: %(default)s")
    parser.add_argument("--stack-name", default=STACK_NAME, help="default: %(default)s")
    parser.add_argument(
        "--parameter-overrides",
        nargs="*",
        metavar="NAME=VALUE",
        help="template parameters, as for sam deploy",
    )
    if env_vars:
        parser.add_argument(
            "-n",
            "--env-vars",
            metavar="FILE",
            help='JSON {"Parameters": {...}, "<LogicalId>": {...}}, as for sam',
        )


def register(commands: Any) -> None:
    """Add invoke, start-api, token and poll to ``python -m infra.local``."""
    invoke = commands.add_parser(
        "invoke", help="run one function's handler on an event, like sam local invoke"
    )
    invoke.add_argument("function", help="the function's logical id in template.yaml, e.g. IngestFunction")
    invoke.add_argument(
        "-e", "--event", metavar="EVENT.json", help="event file ('-' reads stdin; default {})"
    )
    common_options(invoke)
    invoke.set_defaults(func=invoke_command)

    api = commands.add_parser("start-api", help="serve the HttpApi routes locally, like sam local start-api")
    api.add_argument("-p", "--port", type=int, default=3000)
    api.add_argument("--host", default="127.0.0.1")
    common_options(api)
    api.set_defaults(func=start_api_command)

    token = commands.add_parser(
        "token", help="print a JWT the local start-api accepts (signed with the local key)"
    )
    token.add_argument("--sub", default="42", help="the user id (default: %(default)s)")
    token.add_argument("--claims", default="{}", help="more claims, as a JSON object")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    common_options(token, env_vars=False)
    token.set_defaults(func=token_command)

    poll = commands.add_parser(
        "poll", help="feed the Kinesis stream to its function, like the event-source mapping"
    )
    poll.add_argument(
        "--function", help="the consuming function (default: the only one with a Kinesis event)"
    )
    poll.add_argument("--batch-size", type=int, help="override the template's BatchSize")
    poll.add_argument(
        "--until-idle", action="store_true", help="drain the stream, print the stats as JSON and exit"
    )
    poll.add_argument("--interval", type=float, default=POLL_INTERVAL_S, help="seconds between polls")
    common_options(poll)
    poll.set_defaults(func=poll_command)
