"""Where the feature store's parts are: read once from the environment (``FEATURE_*``, ``REDIS_*``)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from movierec.config import RedisSettings
from movierec.feature_views import PROJECT


class FeatureStoreSettings(RedisSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, case_sensitive=False)

    artifact_bucket: str | None = Field(default=None, description="The default home of offline data.")
    feature_offline_uri: str | None = Field(
        default=None,
        description="Root of the dated Parquet sources: s3://bucket/prefix (the training image installs"
        " s3fs for Feast's reader) or a local folder. Default: s3://$ARTIFACT_BUCKET/features/offline.",
    )
    feature_registry_uri: str | None = Field(
        default=None,
        description="Feast's registry file: s3://... or a local path."
        " Default: s3://$ARTIFACT_BUCKET/features/registry.pb.",
    )
    feature_project: str = Field(default=PROJECT, pattern=r"^[A-Za-z0-9_]+$")
    aws_endpoint_url: str | None = Field(
        default=None, description="moto or LocalStack locally; unset on AWS (boto3's defaults)."
    )

    @model_validator(mode="after")
    def _located(self) -> FeatureStoreSettings:
        if self.artifact_bucket is None and (
            self.feature_offline_uri is None or self.feature_registry_uri is None
        ):
            raise ValueError("set ARTIFACT_BUCKET, or both FEATURE_OFFLINE_URI and FEATURE_REGISTRY_URI")
        return self

    @property
    def offline_root(self) -> str:
        return (self.feature_offline_uri or f"s3://{self.artifact_bucket}/features/offline").rstrip("/")

    @property
    def registry_path(self) -> str:
        return self.feature_registry_uri or f"s3://{self.artifact_bucket}/features/registry.pb"
