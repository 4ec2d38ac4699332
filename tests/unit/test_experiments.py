"""Experiment assignment (deterministic, sticky, close to the split) and configuration checks, through
Powertools' real Feature Flags schema validation."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aws_lambda_powertools.utilities.feature_flags import FeatureFlags
from aws_lambda_powertools.utilities.feature_flags.base import StoreProvider

from movierec.experiments import (
    EXPERIMENT_FLAG,
    HOLDOUT,
    Experiment,
    ExperimentConfigError,
    Experiments,
    assign,
    parse_experiment,
)

CONFIG: dict[str, Any] = {
    "name": "ncf-v7",
    "control": "champion",
    "holdout": 0.1,
    "variants": [
        {"name": "champion", "weight": 3},
        {"name": "challenger", "weight": 1, "version": "20250601T030000Z"},
    ],
}
CHI2_CRITICAL_2DF_999 = 13.816  # chi-square, 2 degrees of freedom, p = 0.001


class MemoryStore(StoreProvider):
    """A Feature Flags store over a dict (Powertools' interface; it validates what this returns)."""

    def __init__(self, document: Any) -> None:
        self.document = document

    @property
    def get_raw_configuration(self) -> dict[str, Any]:
        return self.document  # type: ignore[no-any-return]

    def get_configuration(self) -> dict[str, Any]:
        return self.document  # type: ignore[no-any-return]


def flags(value: Any) -> FeatureFlags:
    return FeatureFlags(store=MemoryStore({EXPERIMENT_FLAG: {"default": value, "boolean_type": False}}))


def test_assignment_is_deterministic_sticky_and_close_to_the_configured_split() -> None:
    experiment = parse_experiment(CONFIG)
    rng = random.Random(16)
    users = [f"user-{rng.getrandbits(64):x}" for _ in range(20_000)]
    first = [assign(experiment, u) for u in users]
    assert first == [assign(parse_experiment(CONFIG), u) for u in users]  # another container, same answer
    counts = {name: first.count(name) for name in (HOLDOUT, "champion", "challenger")}
    expected = {HOLDOUT: 0.1 * 20_000, "champion": 0.9 * 0.75 * 20_000, "challenger": 0.9 * 0.25 * 20_000}
    chi2 = sum((counts[name] - expected[name]) ** 2 / expected[name] for name in expected)
    assert chi2 < CHI2_CRITICAL_2DF_999, (counts, chi2)


def test_assignment_is_independent_between_experiments() -> None:
    other = parse_experiment({**CONFIG, "name": "other"})
    experiment = parse_experiment(CONFIG)
    users = [f"u{i}" for i in range(4_000)]
    same = sum(assign(experiment, u) == assign(other, u) for u in users) / len(users)
    # Independent draws agree with probability 0.1² + 0.675² + 0.225² ≈ 0.52, not 1.
    assert 0.47 < same < 0.57


def test_the_holdout_and_every_variant_come_back_from_the_reader() -> None:
    experiments = Experiments(flags(CONFIG))
    assignments = {experiments.assign(f"u{i}") for i in range(200)}
    assert {a.variant for a in assignments if a} == {HOLDOUT, "champion", "challenger"}
    challenger = next(a for a in assignments if a and a.variant == "challenger")
    assert challenger.version == "20250601T030000Z"
    assert next(a for a in assignments if a and a.variant == HOLDOUT).version is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"control": "nobody"}, "control 'nobody' is not one of the variants"),
        ({"holdout": 1.5}, "holdout: Input should be less than 1"),
        ({"variants": [{"name": "champion", "weight": 1}]}, "variants: Tuple should have at least 2 items"),
        ({"variants": [{"name": "a", "weight": 0}, {"name": "champion", "weight": 1}]}, "weight"),
        ({"variants": [{"name": "champion", "weight": 1}] * 2}, "variant names must be unique"),
        (
            {
                "variants": [
                    {"name": "champion", "weight": 1},
                    {"name": "x", "weight": 1, "skip_tiers": ["fast"]},
                ]
            },
            "unknown tiers in skip_tiers",
        ),
        (
            {
                "variants": [
                    {"name": "champion", "weight": 1},
                    {"name": "x", "weight": 1, "version": "v1", "pinned": True},
                ]
            },
            "either a version or pinned: true, not both",
        ),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_a_bad_experiment_is_rejected_with_a_clear_error(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ExperimentConfigError, match="experiment configuration rejected") as raised:
        parse_experiment({**CONFIG, **change})
    assert message in str(raised.value)


def test_a_rejected_configuration_runs_no_experiment_and_says_why() -> None:
    experiments = Experiments(flags({**CONFIG, "control": "nobody"}))
    assert experiments.assign("u1") is None
    assert experiments.error is not None
    assert "control 'nobody'" in experiments.error


def test_a_document_powertools_rejects_runs_no_experiment() -> None:
    # A non-boolean flag without "boolean_type": false fails Powertools' own schema validation.
    experiments = Experiments(FeatureFlags(store=MemoryStore({EXPERIMENT_FLAG: {"default": CONFIG}})))
    assert experiments.assign("u1") is None
    assert experiments.error is not None
    assert "SchemaValidationError" in experiments.error


@pytest.mark.filterwarnings("ignore:Feature flags schema is empty")
def test_no_flag_means_no_experiment_and_a_fixed_document_is_read_again_after_the_refresh() -> None:
    now = [0.0]
    store = MemoryStore({})
    experiments = Experiments(FeatureFlags(store=store), refresh_seconds=30, clock=lambda: now[0])
    assert experiments.current() is None
    assert experiments.error is None
    store.document = {EXPERIMENT_FLAG: {"default": CONFIG, "boolean_type": False}}
    now[0] = 29
    assert experiments.current() is None  # cached until the refresh
    now[0] = 30
    assert isinstance(experiments.current(), Experiment)
