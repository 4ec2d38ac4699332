"""A template read for the local stack: its functions, HTTP API routes, stream sources, state machines
and the names of what the local cloud creates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.local.errors import UsageError
from infra.local.template.intrinsics import Resolver, UnresolvedError
from infra.local.template.names import (
    ACCOUNT_ID,
    BUCKET_ID,
    DEAD_LETTER_BUCKET_ID,
    DEAD_LETTER_QUEUE_ID,
    FUNCTION_TYPES,
    MONGODB_SECRET_ID,
    PUBLIC,
    REDIS_AUTH_SECRET_ID,
    REGION,
    STATE_MACHINE_TYPES,
    STREAM_ID,
    queue_url,
)
from infra.local.template.specs import FunctionSpec, KinesisSource, LocalResources, Route, StateMachineSpec


class Stack(Resolver):
    """A template evaluated for one local stack: parameters, conditions, names and environments."""

    # -- functions --

    def _globals(self, section: str) -> dict[str, Any]:
        return dict((self.template.get("Globals") or {}).get(section) or {})

    def _function_properties(self, logical_id: str) -> dict[str, Any]:
        merged = self._globals("Function")
        own = dict(self.resources[logical_id].get("Properties") or {})
        for key, value in own.items():
            if key == "Environment":
                variables = dict((merged.get("Environment") or {}).get("Variables") or {})
                variables.update((value or {}).get("Variables") or {})
                merged["Environment"] = {"Variables": variables}
            elif key == "Layers":
                merged["Layers"] = list(merged.get("Layers") or []) + list(value or [])
            else:
                merged[key] = value
        return merged

    def function_ids(self) -> list[str]:
        return self.of_type(*FUNCTION_TYPES)

    def function(self, logical_id: str) -> FunctionSpec:
        if logical_id not in self.function_ids():
            known = ", ".join(sorted(self.function_ids())) or "none"
            raise UsageError(f"no function {logical_id!r} in {self.template_path.name} (functions: {known})")
        properties = self._function_properties(logical_id)
        code_uri = self.resolve(properties.get("CodeUri", "."))
        if not isinstance(code_uri, str):
            raise UsageError(f"{logical_id}: CodeUri must be a local directory to run it locally")
        variables = (properties.get("Environment") or {}).get("Variables") or {}
        environment: dict[str, str | None] = {}
        for name, value in variables.items():
            try:
                environment[str(name)] = self.resolve_text(value)
            except UnresolvedError:
                environment[str(name)] = None
        role = properties.get("Role")
        role_arn = (
            self.resolve_text(role)
            if role is not None
            else f"arn:aws:iam::{ACCOUNT_ID}:role/{self.stack_name}-{logical_id}Role"
        )
        return FunctionSpec(
            logical_id=logical_id,
            function_name=self._name(logical_id, "FunctionName"),
            handler=self.resolve_text(properties.get("Handler", "app.lambda_handler")),
            code_dir=(self.base_dir / code_uri).resolve(),
            layer_dirs=tuple(self._layer_dir(layer) for layer in properties.get("Layers") or []),
            memory_mb=int(self.resolve_text(properties.get("MemorySize", 128))),
            timeout_s=int(self.resolve_text(properties.get("Timeout", 3))),
            runtime=self.resolve_text(properties.get("Runtime", "python3.12")),
            role_arn=role_arn,
            environment=environment,
        )

    def _layer_dir(self, layer: Any) -> Path:
        if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in self.resources:
            content = (self.resources[layer["Ref"]].get("Properties") or {}).get("ContentUri")
            if isinstance(content, str):
                directory = (self.base_dir / content).resolve()
                # A pre-built layer keeps its modules in python/, as /opt/python at runtime.
                return directory / "python" if (directory / "python").is_dir() else directory
        raise UsageError(f"layer {layer!r} is not a layer of this template; it cannot be loaded locally")

    def _events(self, logical_id: str, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        events = (self.resources[logical_id].get("Properties") or {}).get("Events") or {}
        return [
            (str(name), dict(event.get("Properties") or {}))
            for name, event in events.items()
            if event.get("Type") == event_type
        ]

    def kinesis_sources(self, logical_id: str | None = None) -> list[KinesisSource]:
        sources = []
        for function_id in [logical_id] if logical_id else self.function_ids():
            for _, props in self._events(function_id, "Kinesis"):
                stream_arn = self.resolve_text(props["Stream"])
                on_failure = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                    "Destination"
                )
                types = self.resolve(props.get("FunctionResponseTypes") or [])

                def number(name: str, default: int, props: dict[str, Any] = props) -> int:
                    return int(self.resolve_text(props.get(name, default)))

                sources.append(
                    KinesisSource(
                        function_id=function_id,
                        stream_name=stream_arn.rsplit("/", 1)[-1],
                        stream_arn=stream_arn,
                        starting_position=self.resolve_text(props.get("StartingPosition", "TRIM_HORIZON")),
                        batch_size=number("BatchSize", 100),
                        batching_window_s=number("MaximumBatchingWindowInSeconds", 0),
                        report_batch_item_failures="ReportBatchItemFailures" in types,
                        bisect_on_error=self.resolve_text(props.get("BisectBatchOnFunctionError", False))
                        == "true",
                        max_retry_attempts=number("MaximumRetryAttempts", -1),
                        max_record_age_s=number("MaximumRecordAgeInSeconds", -1),
                        on_failure_arn=self.resolve_text(on_failure) if on_failure is not None else None,
                        enabled=self.resolve_text(props.get("Enabled", True)) == "true",
                    )
                )
        return sources

    # -- state machines --

    def state_machine_ids(self) -> list[str]:
        return self.of_type(*STATE_MACHINE_TYPES)

    def state_machine(self, logical_id: str | None = None) -> StateMachineSpec:
        """A state machine of the template (the only one when no id is given) with its substitutions."""
        known = self.state_machine_ids()
        names = ", ".join(sorted(known)) or "none"
        if logical_id is None:
            if not known:
                raise UsageError(f"{self.template_path.name} has no state machine to run")
            if len(known) > 1:
                raise UsageError(f"{self.template_path.name} has several state machines ({names}); pick one")
            logical_id = known[0]
        if logical_id not in known:
            raise UsageError(f"no state machine {logical_id!r} in {self.template_path.name} ({names})")
        properties = self.resources[logical_id].get("Properties") or {}
        definition_uri = self.resolve(properties.get("DefinitionUri"))
        if not isinstance(definition_uri, str) or definition_uri.startswith("s3://"):
            raise UsageError(f"{logical_id}: DefinitionUri must be a local file to run it locally")
        substitutions: dict[str, str | None] = {}
        for name, value in (properties.get("DefinitionSubstitutions") or {}).items():
            try:
                substitutions[str(name)] = self.resolve_text(value)
            except UnresolvedError:
                substitutions[str(name)] = None
        return StateMachineSpec(
            logical_id=logical_id,
            name=self._name(logical_id, "Name"),
            definition_path=(self.base_dir / definition_uri).resolve(),
            substitutions=substitutions,
        )

    # -- the HTTP API --

    def routes(self) -> list[Route]:
        routes = []
        for function_id in self.function_ids():
            for _, props in self._events(function_id, "HttpApi"):
                api = self._api_properties(props.get("ApiId"))
                api_auth = api.get("Auth") or {}
                route_auth = props.get("Auth") or {}
                authorizer = route_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
                authorizer_name = None if authorizer in (None, PUBLIC) else str(authorizer)
                authorizer_type = PUBLIC
                issuer: str | None = None
                audience: tuple[str, ...] = ()
                if authorizer_name is not None:
                    authorizer_type = "JWT"
                    definition = (api_auth.get("Authorizers") or {}).get(authorizer_name) or {}
                    if "JwtConfiguration" not in definition:
                        authorizer_type = "AWS_IAM" if authorizer_name == "AWS_IAM" else "REQUEST"
                    else:
                        issuer, audience = self._jwt_configuration(definition["JwtConfiguration"])
                scopes = route_auth.get("AuthorizationScopes")
                if scopes is None and authorizer_name is not None:
                    definition = (api_auth.get("Authorizers") or {}).get(authorizer_name) or {}
                    scopes = definition.get("AuthorizationScopes")
                path = self.resolve_text(props["Path"]) if "Path" in props else "$default"
                method = self.resolve_text(props.get("Method", "ANY")).upper()
                routes.append(
                    Route(
                        method="ANY" if method in {"*", "X-AMAZON-APIGATEWAY-ANY-METHOD"} else method,
                        path=path,
                        function_id=function_id,
                        authorizer=authorizer_name,
                        authorizer_type=authorizer_type,
                        scopes=tuple(str(scope) for scope in self.resolve(scopes or [])),
                        issuer=issuer,
                        audience=audience,
                    )
                )
        return routes

    def _jwt_configuration(self, configuration: Any) -> tuple[str | None, tuple[str, ...]]:
        """A JwtConfiguration's issuer and audiences; (None, ()) where only AWS can resolve them."""
        try:
            resolved = self.resolve(configuration)
        except UnresolvedError:
            return None, ()
        issuer = resolved.get("issuer") if isinstance(resolved, dict) else None
        audience = resolved.get("audience") if isinstance(resolved, dict) else None
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        return (str(issuer) if issuer else None), tuple(str(a) for a in audiences if a)

    def jwt_authorizer(self) -> tuple[str, tuple[str, ...]]:
        """The issuer and audiences of the API's default JWT authorizer (what local tokens carry)."""
        for route in self.routes():
            if route.authorizer_type == "JWT" and route.issuer:
                return route.issuer, route.audience
        raise UsageError(f"{self.template_path.name} has no JWT authorizer with an issuer")

    def _api_properties(self, api_id: Any) -> dict[str, Any]:
        # Without ApiId, SAM attaches the route to its implicit API configured by Globals.HttpApi.
        globals_api = self._globals("HttpApi")
        if api_id is None:
            return globals_api
        logical_id = api_id.get("Ref") if isinstance(api_id, dict) else api_id
        resource = self.resources.get(str(logical_id))
        if resource is None:
            raise UsageError(f"HttpApi event refers to unknown API {logical_id!r}")
        return {**globals_api, **(resource.get("Properties") or {})}

    def http_api_cors(self) -> dict[str, Any] | None:
        """The CORS settings of the (first) HttpApi, as keyword arguments for ``apigw.Cors``."""
        for logical_id in self.of_type("AWS::Serverless::HttpApi"):
            properties = {**self._globals("HttpApi"), **(self.resources[logical_id].get("Properties") or {})}
            cors = properties.get("CorsConfiguration")
            if cors is None:
                continue
            if cors is True:
                return {"allow_origins": ("*",), "allow_headers": ("*",), "allow_methods": ("*",)}
            cors = self.resolve(cors)
            return {
                "allow_origins": tuple(cors.get("AllowOrigins") or ()),
                "allow_headers": tuple(cors.get("AllowHeaders") or ()),
                "allow_methods": tuple(cors.get("AllowMethods") or ()),
                "max_age": int(cors["MaxAge"]) if "MaxAge" in cors else None,
            }
        return None

    # -- names the local cloud creates --

    def local_resources(self) -> LocalResources:
        for required in (STREAM_ID, BUCKET_ID, DEAD_LETTER_QUEUE_ID, MONGODB_SECRET_ID, REDIS_AUTH_SECRET_ID):
            if not self.exists(required):
                raise UsageError(f"{self.template_path.name} has no {required}; the local cloud needs it")
        dead_letter_queue = self._name(DEAD_LETTER_QUEUE_ID, "QueueName")
        return LocalResources(
            stack_name=self.stack_name,
            region=REGION,
            account_id=ACCOUNT_ID,
            stream_name=self._name(STREAM_ID, "Name"),
            bucket_name=self._name(BUCKET_ID, "BucketName"),
            dead_letter_queue_name=dead_letter_queue,
            mongodb_secret_name=self._name(MONGODB_SECRET_ID, "Name"),
            redis_auth_secret_name=self._name(REDIS_AUTH_SECRET_ID, "Name"),
            dead_letter_bucket_name=(
                self._name(DEAD_LETTER_BUCKET_ID, "BucketName")
                if self.exists(DEAD_LETTER_BUCKET_ID)
                else None
            ),
            streams=tuple(self._name(i, "Name") for i in self.of_type("AWS::Kinesis::Stream")),
            buckets=tuple(self._name(i, "BucketName") for i in self.of_type("AWS::S3::Bucket")),
            queues=tuple(self._name(i, "QueueName") for i in self.of_type("AWS::SQS::Queue")),
            secrets=tuple(self._name(i, "Name") for i in self.of_type("AWS::SecretsManager::Secret")),
            topics=tuple(self._name(i, "TopicName") for i in self.of_type("AWS::SNS::Topic")),
            dead_letter_queue_url=(
                queue_url(self.endpoint_url, ACCOUNT_ID, dead_letter_queue) if self.endpoint_url else None
            ),
        )
