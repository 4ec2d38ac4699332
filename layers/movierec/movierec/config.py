"""Configuration: one validated pydantic-settings model per deployable, read once at start-up.

The environment variable of a field is its name in upper case (``redis_url`` -> ``REDIS_URL``).
``template.yaml`` sets exactly these variables for each function; a test holds the two in step.
Domain code receives a settings object and never reads ``os.environ`` itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from movierec.experiments import NAME_PATTERN as EXPERIMENT_NAME_PATTERN
from movierec.feature_views import PROJECT
from movierec.history import HISTORY_LENGTH


class _Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)


class RedisSettings(_Settings):
    """Where the cache is, and how patiently to talk to it."""

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="redis:// or rediss:// (TLS).")
    redis_auth_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret holding the ElastiCache AUTH token."
    )
    redis_connect_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    redis_socket_timeout_ms: int = Field(default=200, ge=1, le=10_000)
    redis_cluster: bool = Field(
        default=False,
        description=(
            "Speak the Redis Cluster protocol (ElastiCache Serverless, cluster-mode replication groups): "
            "REDIS_URL names one node; the client discovers the others and routes by hash slot."
        ),
    )


class MongoSettings(_Settings):
    """Where the database is."""

    mongodb_uri: SecretStr | None = Field(default=None, description="Used as is when set (local, Atlas).")
    mongodb_secret_arn: str | None = Field(
        default=None, description="Secrets Manager secret holding the connection string (DocumentDB)."
    )
    mongodb_database: str = Field(default="movierec", min_length=1, max_length=64)
    mongodb_timeout_ms: int = Field(default=2_000, ge=10, le=60_000)

    @model_validator(mode="after")
    def _mongo_is_reachable(self) -> MongoSettings:
        if self.mongodb_uri is None and self.mongodb_secret_arn is None:
            raise ValueError("set MONGODB_URI or MONGODB_SECRET_ARN")
        return self


class IngestSettings(RedisSettings, MongoSettings):
    dead_letter_queue_url: str = Field(description="SQS queue that receives poison records.")
    dead_letter_bucket: str = Field(
        description="S3 bucket for poison payloads too large to travel inside an SQS message."
    )
    recent_list_length: int = Field(
        default=HISTORY_LENGTH,
        ge=HISTORY_LENGTH,
        le=1_000,
        description="Latest engagements kept per user in Redis; at least what the model reads.",
    )
    trending_bucket_seconds: int = Field(default=3_600, ge=60, le=86_400)
    trending_buckets_kept: int = Field(default=48, ge=1, le=24 * 30)
    max_clock_skew_seconds: int = Field(
        default=300,
        ge=0,
        le=7 * 24 * 3600,
        description="How far occurred_at may lead the ingest clock; events further ahead are poison.",
    )
    store_retry_seconds: float = Field(
        default=20,
        ge=0,
        le=600,
        description="Backoff within one invocation while a store is down, before the batch is failed"
        " back to the event-source mapping; keep it well under the function's timeout.",
    )
    applied_marker_ttl_seconds: int = Field(
        default=8 * 24 * 3600,
        ge=3_600,
        description="Longer than the stream's retention, so any redelivery is still recognised.",
    )


class ExperimentsSettings(BaseSettings):
    """Where the A/B test configuration is: read by the recommend function (to assign variants) and by
    the training job's attribute stage (to know each experiment's control)."""

    experiments_source: Literal["none", "appconfig", "s3"] = Field(
        default="none",
        description="Where the A/B test configuration is (docs/experimentation.md): AWS AppConfig, or the"
        " artifact bucket's experiments/flags.json (the local runner's stand-in for AppConfig).",
    )
    experiments_application: str | None = Field(default=None, description="The AppConfig application.")
    experiments_environment: str | None = Field(default=None, description="The AppConfig environment.")
    experiments_profile: str | None = Field(default=None, description="The AppConfig configuration profile.")

    @model_validator(mode="after")
    def _appconfig_is_named(self) -> ExperimentsSettings:
        if self.experiments_source == "appconfig" and self.appconfig_names is None:
            raise ValueError(
                "EXPERIMENTS_SOURCE=appconfig needs EXPERIMENTS_APPLICATION, _ENVIRONMENT and _PROFILE"
            )
        return self

    @property
    def appconfig_names(self) -> tuple[str, str, str] | None:
        """(application, environment, profile) when all three are set."""
        application, environment = self.experiments_application, self.experiments_environment
        profile = self.experiments_profile
        return (application, environment, profile) if application and environment and profile else None


class RecommendSettings(RedisSettings, ExperimentsSettings):
    # A request has 100 ms in all: a cache that does not answer in 50 ms is treated as down.
    redis_connect_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    redis_socket_timeout_ms: int = Field(default=50, ge=1, le=10_000)
    artifact_bucket: str = Field(description="S3 bucket holding published model artifacts.")
    deadline_ms: int = Field(default=100, ge=5, le=10_000)
    online_cache_ttl_seconds: int = Field(default=900, ge=1, le=86_400)
    trending_bucket_seconds: int = Field(default=3_600, ge=60, le=86_400)
    popularity_snapshot_path: str | None = Field(
        default=None,
        description="Popularity bundled at build time, served when Redis is down and S3 was unreachable at"
        " init; a relative path is in the function's package directory.",
    )
    online_movie_features: bool = Field(
        default=True,
        description="Re-rank online candidates with their current features from the feature store's"
        " online store (the same Redis; docs/features.md), not the training-time ones.",
    )
    online_features_cache_seconds: int = Field(
        default=60, ge=0, le=3_600, description="How long a container keeps a movie's online features."
    )
    feature_project: str = Field(default=PROJECT, pattern=r"^[A-Za-z0-9_]+$")


class TrainingSettings(RedisSettings, MongoSettings, ExperimentsSettings):
    artifact_bucket: str = Field(description="S3 bucket for features, artifacts and reports.")
    publish_grace_seconds: int = Field(
        default=3_600, ge=0, description="How long a superseded version stays readable after a switch."
    )
    top_n: int = Field(default=100, ge=1, le=1_000)
    popularity_n: int = Field(default=200, ge=1, le=5_000)
    active_user_days: int = Field(default=30, ge=1, le=3_650)
    pushgateway_url: str | None = Field(
        default=None,
        description="A Prometheus Pushgateway (http://host:9091): the run pushes its metrics there when it"
        " ends (training_job/pushgateway.py; docs/operations.md). Unset: no push.",
    )
    challenger_variant: str | None = Field(
        default=None,
        pattern=EXPERIMENT_NAME_PATTERN,
        description="Publish each model that passes the gate as a challenger pinned under this experiment"
        ' variant (`"pinned": true` in the experiment), beside the champion, instead of replacing it'
        " (docs/experimentation.md). Unset: the model becomes the champion.",
    )
    gate_baselines: tuple[Literal["popularity", "segment_popularity", "als", "ease"], ...] | None = Field(
        default=None,
        min_length=1,
        description="The baselines the quality gate makes the model beat, as a JSON list. Unset (the"
        " deployed default): every baseline of the run. `make demo` narrows it to popularity: its few"
        " thousand synthetic events leave the margins to ALS and EASE within noise.",
    )

    @field_validator("challenger_variant", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # the template passes "" for "no challenger"
