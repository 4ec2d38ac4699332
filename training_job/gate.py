"""The quality gate: publish only a model that beats the strongest baseline of the same run on
validation, and has not fallen behind the currently published one by more than a margin. The
decision always says why.

Champion selection uses validation only (test is for reporting): each gate metric of the model
(``validation_<metric>``) must beat that metric's strongest baseline (popularity, segment popularity,
ALS, EASE: whichever is highest on it). The published model is compared on test metrics (its own
``metrics`` are test metrics of its run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

VALIDATION = "validation_"  # prefix of the validation copy of a metric, in metrics and baselines


@dataclass(frozen=True)
class GateConfig:
    metrics: tuple[str, ...] = ("ndcg@10", "hr@10")
    margin: float = 0.01  # absolute: the new model may trail the published one by at most this much
    baselines: tuple[str, ...] | None = None  # None: every baseline of the run; each must be beaten


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reason: str
    checks: list[str] = field(default_factory=list)


def strongest(baselines: Mapping[str, Mapping[str, float]], key: str) -> tuple[str, float] | None:
    """The baseline with the highest finite ``key`` (the earlier one on a tie), or None."""
    found: tuple[str, float] | None = None
    for name, values in baselines.items():
        value = values.get(key)
        if value is not None and math.isfinite(value) and (found is None or value > found[1]):
            found = (name, value)
    return found


def _against_baselines(
    name: str, metrics: Mapping[str, float], baselines: Mapping[str, Mapping[str, float]]
) -> tuple[bool, str]:
    key = VALIDATION + name
    value = metrics.get(key)
    if value is None or not math.isfinite(value):
        return False, f"{key} is missing or not finite"
    best = strongest(baselines, key)
    if best is None:
        return False, f"no baseline has {key} to compare with"
    others = ", ".join(f"{b} {v[key]:.4f}" for b, v in baselines.items() if b != best[0] and key in v)
    context = f" (others: {others})" if others else ""
    gap = value - best[1]
    against = f"the strongest baseline, {best[0]} {best[1]:.4f}"
    if gap > 0:
        return True, f"{key} {value:.4f} beats {against}, by {gap:+.4f}{context}"
    return False, f"{key} {value:.4f} does not beat {against} ({gap:+.4f}){context}"


def decide(
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    previous: Mapping[str, float] | None,
    config: GateConfig | None = None,
) -> GateDecision:
    config = config or GateConfig()
    failures: list[str] = []
    checks: list[str] = []
    missing = [b for b in config.baselines or () if b not in baselines]
    if missing:
        failures.append(f"no {', '.join(missing)} baseline in this run")
    pool = {b: v for b, v in baselines.items() if config.baselines is None or b in config.baselines}
    for name in config.metrics:
        ok, line = _against_baselines(name, metrics, pool)
        (checks if ok else failures).append(line)
        if previous is None:
            continue
        value, old = metrics.get(name), previous.get(name)
        if value is None or not math.isfinite(value):
            failures.append(f"{name} is missing or not finite")
        elif old is None:
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


def versus_strongest(
    metrics: Mapping[str, float],
    baselines: Mapping[str, Mapping[str, float]],
    names: tuple[str, ...] = GateConfig.metrics,
) -> dict[str, dict[str, dict[str, float | str]]]:
    """``{"validation" | "test": {metric: {"model", "strongest", "baseline", "difference"}}}``: the
    model against each metric's strongest baseline (for the report and the benchmark; the gate
    decides on validation alone). A metric that the model or every baseline lacks is left out."""
    out: dict[str, dict[str, dict[str, float | str]]] = {}
    for split, prefix in (("validation", VALIDATION), ("test", "")):
        rows: dict[str, dict[str, float | str]] = {}
        for name in names:
            value, best = metrics.get(prefix + name), strongest(baselines, prefix + name)
            if value is None or not math.isfinite(value) or best is None:
                continue
            rows[name] = {
                "model": value,
                "strongest": best[0],
                "baseline": best[1],
                "difference": value - best[1],
            }
        if rows:
            out[split] = rows
    return out
