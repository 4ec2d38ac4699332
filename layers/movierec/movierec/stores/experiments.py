"""Where the experiment configuration lives: Powertools Feature Flags over AWS AppConfig, or over a JSON
object in S3 (the local runner and tests: moto has AppConfig but not the AppConfig Data API that
``AppConfigStore`` reads through). Either way Powertools' ``FeatureFlags`` validates the document's
schema and evaluates it; ``movierec.experiments`` reads the flag's value."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.feature_flags import AppConfigStore, FeatureFlags
from aws_lambda_powertools.utilities.feature_flags.base import StoreProvider
from aws_lambda_powertools.utilities.feature_flags.exceptions import ConfigurationStoreError

from movierec.config import ExperimentsSettings
from movierec.errors import StoreUnavailableError
from movierec.stores.blobs import BlobStore

EXPERIMENTS_KEY = "experiments/flags.json"
"""The local store's object in the artifact bucket."""


class BlobFlagStore(StoreProvider):
    """A Feature Flags document in S3, read at most every ``max_age`` seconds. A missing object is an
    empty document (no flags, so no experiment)."""

    def __init__(
        self,
        blobs: BlobStore,
        key: str = EXPERIMENTS_KEY,
        max_age: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._blobs = blobs
        self._key = key
        self._max_age = max_age
        self._clock = clock
        self._cached: tuple[float, dict[str, Any]] | None = None

    @property
    def get_raw_configuration(self) -> dict[str, Any]:
        try:
            raw = self._blobs.get(self._key)
        except StoreUnavailableError as error:
            raise ConfigurationStoreError(str(error)) from error
        if raw is None:
            return {}
        try:
            document = json.loads(raw)
        except ValueError as error:
            raise ConfigurationStoreError(f"{self._blobs.uri(self._key)} is not JSON: {error}") from error
        if not isinstance(document, dict):
            raise ConfigurationStoreError(f"{self._blobs.uri(self._key)} is not a JSON object")
        return document

    def get_configuration(self) -> dict[str, Any]:
        now = self._clock()
        if self._cached is None or now - self._cached[0] >= self._max_age:
            self._cached = (now, self.get_raw_configuration)
        return self._cached[1]


def appconfig_flags(application: str, environment: str, profile: str, max_age: int = 30) -> FeatureFlags:
    return FeatureFlags(
        store=AppConfigStore(environment=environment, application=application, name=profile, max_age=max_age)
    )


def blob_flags(blobs: BlobStore, key: str = EXPERIMENTS_KEY, max_age: float = 5.0) -> FeatureFlags:
    return FeatureFlags(store=BlobFlagStore(blobs, key, max_age))


def experiment_flags(settings: ExperimentsSettings, blobs: BlobStore) -> FeatureFlags | None:
    """The configured source's flags; None when no experiment source is configured."""
    names = settings.appconfig_names
    if settings.experiments_source == "appconfig" and names is not None:
        return appconfig_flags(*names)
    if settings.experiments_source == "s3":
        return blob_flags(blobs)
    return None
