"""A/B tests as configuration: one experiment at a time, read through Powertools Feature Flags.

The configuration is a Feature Flags document (AWS AppConfig on AWS, a JSON object in the artifact
bucket locally, see ``movierec.stores.experiments``) with one non-boolean flag, ``EXPERIMENT_FLAG``,
whose value is an ``Experiment``::

    {"experiment": {"boolean_type": false, "default": {
        "name": "ncf-v7-vs-v6", "holdout": 0.1, "control": "champion",
        "variants": [{"name": "champion", "weight": 1},
                     {"name": "challenger", "weight": 1, "version": "20250601T030000Z-ab12"}]}}}

A variant names a published version (its Redis namespace, kept live with ``PublicationStore.pin``;
``None`` is whatever is current: the champion), or ``pinned``: whatever version a training run
published as challenger under the variant's name, and tier settings (``skip_tiers``). Assignment is a
sha256 of the experiment's name and the user id: deterministic, sticky across containers and requests,
and independent between experiments. ``holdout`` of the users get the champion and are recorded as the
``HOLDOUT`` variant. A document Powertools' schema check or ``Experiment`` rejects is logged with the
reason and no experiment runs: the API serves the champion.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from movierec.observability import logger

EXPERIMENT_FLAG = "experiment"
HOLDOUT = "holdout"
NAME_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
SERVABLE_TIERS = frozenset({"personalized", "online", "regional_popular", "global_popular"})
REFRESH_SECONDS = 30.0
"""How long a read configuration is used before the store is asked again (AppConfig's own cache sits
under this)."""


class ExperimentConfigError(ValueError):
    """The experiment configuration was rejected; the message says why."""


class Variant(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    weight: float = Field(gt=0, le=1_000_000)
    version: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[^{}\s]+$",
        description="The published version this variant serves; None: the current one (the champion).",
    )
    pinned: bool = Field(
        default=False,
        description="Serve whatever version is pinned under this variant's name (a training run with"
        " CHALLENGER_VARIANT set pins each model it publishes there), instead of a fixed ``version``.",
    )
    skip_tiers: tuple[str, ...] = Field(default=(), description="Tiers this variant does not try.")

    @model_validator(mode="after")
    def _valid(self) -> Variant:
        if self.pinned and self.version is not None:
            raise ValueError("a variant names either a version or pinned: true, not both")
        unknown = set(self.skip_tiers) - SERVABLE_TIERS
        if unknown:
            raise ValueError(
                f"unknown tiers in skip_tiers: {sorted(unknown)}; known: {sorted(SERVABLE_TIERS)}"
            )
        return self


class Experiment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    control: str = Field(pattern=NAME_PATTERN, description="The variant the others are compared with.")
    holdout: float = Field(default=0.0, ge=0.0, lt=1.0, description="Share of users kept out.")
    variants: tuple[Variant, ...] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique: {names}")
        if HOLDOUT in names:
            raise ValueError(f"{HOLDOUT!r} is reserved for the held-out users")
        if self.control not in names:
            raise ValueError(f"control {self.control!r} is not one of the variants {names}")
        return self

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)


def parse_experiment(document: Any) -> Experiment:
    """The flag's value as an ``Experiment``; ``ExperimentConfigError`` with every problem otherwise."""
    try:
        return Experiment.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'experiment'}: {e['msg']}" for e in error.errors()
        )
        raise ExperimentConfigError(f"experiment configuration rejected: {problems}") from None


def bucket(experiment: str, user_id: str) -> float:
    """The user's point in [0, 1) for this experiment: the first 8 bytes of sha256(experiment:user)."""
    digest = hashlib.sha256(f"{experiment}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign(experiment: Experiment, user_id: str) -> str:
    """The variant's name (or ``HOLDOUT``): the same user always gets the same one."""
    point = bucket(experiment.name, user_id)
    if point < experiment.holdout:
        return HOLDOUT
    point = (point - experiment.holdout) / (1.0 - experiment.holdout)
    total = sum(v.weight for v in experiment.variants)
    cumulative = 0.0
    for variant in experiment.variants:
        cumulative += variant.weight / total
        if point < cumulative:
            return variant.name
    return experiment.variants[-1].name


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment: str
    variant: str
    version: str | None  # the published version to serve; None: the current one
    skip_tiers: frozenset[str]
    pinned: bool = False  # the version is whatever is pinned under ``variant``, resolved per request


class FlagSource(Protocol):
    """What ``Experiments`` reads: Powertools' ``FeatureFlags`` (over any ``StoreProvider``)."""

    def get_configuration(self) -> dict[str, Any]: ...

    def evaluate(self, *, name: str, context: dict[str, Any] | None = None, default: Any) -> Any: ...


class Experiments:
    """The running experiment, refreshed every ``refresh_seconds``; ``assign`` per request."""

    def __init__(
        self,
        flags: FlagSource,
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flags = flags
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._read_at: float | None = None
        self._experiment: Experiment | None = None
        self._raw: Any = None
        self.error: str | None = None  # why the last configuration read was rejected

    def current(self) -> Experiment | None:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_seconds:
            self._read_at = now
            self._experiment = self._read()
        return self._experiment

    def assign(self, user_id: str) -> Assignment | None:
        experiment = self.current()
        if experiment is None:
            return None
        name = assign(experiment, user_id)
        variant = experiment.variant(name)
        if variant is None:  # the holdout: the champion, as without an experiment
            return Assignment(experiment.name, name, None, frozenset())
        return Assignment(
            experiment.name, name, variant.version, frozenset(variant.skip_tiers), variant.pinned
        )

    def _read(self) -> Experiment | None:
        try:
            self._flags.get_configuration()  # Powertools' schema validation (skipped on a cache hit)
            raw = self._flags.evaluate(name=EXPERIMENT_FLAG, context={}, default=None)
        except Exception as error:  # a store or schema error: no experiment, the champion serves
            self._rejected(f"experiment configuration unreadable: {type(error).__name__}: {error}")
            return None
        if raw is None or raw is False:
            self._raw, self.error = raw, None
            return None
        if raw == self._raw and self._experiment is not None:
            return self._experiment
        try:
            experiment = parse_experiment(raw)
        except ExperimentConfigError as error:
            self._rejected(str(error))
            return None
        self._raw, self.error = raw, None
        logger.info("experiment running", extra={"experiment": experiment.model_dump(mode="json")})
        return experiment

    def _rejected(self, reason: str) -> None:
        if reason != self.error:
            logger.error("experiment configuration rejected; serving the champion", extra={"reason": reason})
        self.error = reason
        self._raw = None
