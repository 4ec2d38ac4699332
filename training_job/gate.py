"""The quality gate: publish only a model that beats popularity and has not fallen behind the
currently published one by more than a margin. The decision always says why."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateConfig:
    metrics: tuple[str, ...] = ("ndcg@10", "hr@10")
    margin: float = 0.01  # absolute: the new model may trail the published one by at most this much
    baseline: str = "popularity"


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def decide(
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    previous: Mapping[str, float] | None,
    config: GateConfig | None = None,
) -> GateDecision:
    config = config or GateConfig()
    failures: list[str] = []
    checks: list[str] = []
    reference = baselines.get(config.baseline)
    for name in config.metrics:
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            failures.append(f"{name} is missing or not finite")
            continue
        if reference is None or name not in reference:
            failures.append(f"{config.baseline} baseline has no {name} to compare with")
        elif value > reference[name]:
            checks.append(f"{name} {value:.4f} beats {config.baseline} {reference[name]:.4f}")
        else:
            failures.append(f"{name} {value:.4f} does not beat {config.baseline} {reference[name]:.4f}")
        if previous is None:
            continue
        old = previous.get(name)
        if old is None:
            checks.append(f"published model has no {name}; not compared")
        elif value >= old - config.margin:
            checks.append(f"{name} {value:.4f} within {config.margin} of published {old:.4f}")
        else:
            failures.append(f"{name} {value:.4f} trails published {old:.4f} by more than {config.margin}")
    if previous is None:
        checks.append("no published model to compare with")
    if failures:
        return GateDecision(False, "rejected: " + "; ".join(failures), checks + failures)
    return GateDecision(True, "passed: " + "; ".join(checks), checks)
