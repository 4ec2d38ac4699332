"""The ``RepoConfig`` generated from settings, and the ``FeatureStore`` over it.

Online store: the product's Redis (ElastiCache; locally the tests' or the demo's server), in Feast's
Redis layout that ``movierec.stores.online_features`` reads. Offline store: Feast's file (dask) store
over the dated Parquet. Registry: a file in S3 (or a local path); it is read afresh on each call
(``cache_ttl_seconds=0``), so a reader sees what the last ``apply`` registered.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml
from feast import FeatureStore, RepoConfig

from movierec.stores.secrets import read_secret
from training_job.feature_repo.settings import FeatureStoreSettings


def redis_connection_string(settings: FeatureStoreSettings) -> str:
    """Feast's ``host:port,db=N,ssl=true,password=...`` from ``REDIS_URL`` (and the AUTH secret)."""
    url = urlparse(settings.redis_url)
    parts = [f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"]
    db = (url.path or "/0").lstrip("/") or parse_qs(url.query).get("db", ["0"])[0]
    if not settings.redis_cluster:
        parts.append(f"db={db}")
    if url.scheme == "rediss":
        parts.append("ssl=true")
    password = url.password
    if settings.redis_auth_secret_arn:
        password = read_secret(settings.redis_auth_secret_arn)
    if password:
        parts.append(f"password={password}")
    return ",".join(parts)


def repo_config_dict(settings: FeatureStoreSettings, repo_path: Path) -> dict[str, Any]:
    return {
        "project": settings.feature_project,
        "provider": "local",
        "repo_path": str(repo_path),
        "registry": {"registry_type": "file", "path": settings.registry_path, "cache_ttl_seconds": 0},
        "online_store": {
            "type": "redis",
            "redis_type": "redis_cluster" if settings.redis_cluster else "redis",
            "connection_string": redis_connection_string(settings),
        },
        "offline_store": {"type": "dask"},
        "entity_key_serialization_version": 3,
    }


def _s3_endpoint(settings: FeatureStoreSettings) -> None:
    # Feast's S3 registry store takes its endpoint from this variable only (feast/infra/registry/s3.py).
    if settings.aws_endpoint_url and settings.registry_path.startswith("s3://"):
        os.environ["FEAST_S3_ENDPOINT_URL"] = settings.aws_endpoint_url


def open_store(settings: FeatureStoreSettings, repo_path: Path | None = None) -> FeatureStore:
    _s3_endpoint(settings)
    path = repo_path or Path(__file__).parent
    return FeatureStore(config=RepoConfig(**repo_config_dict(settings, path)), repo_path=str(path))


def write_feature_store_yaml(settings: FeatureStoreSettings, folder: Path) -> Path:
    """A ``feature_store.yaml`` for the ``feast`` CLI (``feast -c FOLDER feature-views list``)."""
    _s3_endpoint(settings)
    folder.mkdir(parents=True, exist_ok=True)
    config = repo_config_dict(settings, folder)
    config.pop("repo_path")
    target = folder / "feature_store.yaml"
    target.write_text(yaml.safe_dump(config, sort_keys=False))
    return target
