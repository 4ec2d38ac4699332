"""The quality gate passes only a model that beats the strongest baseline on validation and keeps up
with the published one."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from training_job.gate import GateConfig, decide, strongest

BASELINES = {
    "popularity": {"validation_hr@10": 0.45, "validation_ndcg@10": 0.25, "hr@10": 0.46, "ndcg@10": 0.26},
    "als": {"validation_hr@10": 0.68, "validation_ndcg@10": 0.40, "hr@10": 0.69, "ndcg@10": 0.41},
    "ease": {"validation_hr@10": 0.71, "validation_ndcg@10": 0.445, "hr@10": 0.72, "ndcg@10": 0.45},
}


def model(val_hr: float, val_ndcg: float, hr: float = 0.7, ndcg: float = 0.42) -> dict[str, float]:
    return {"validation_hr@10": val_hr, "validation_ndcg@10": val_ndcg, "hr@10": hr, "ndcg@10": ndcg}


def test_a_model_beating_every_baseline_on_validation_passes() -> None:
    decision = decide(model(0.75, 0.47), BASELINES, None)
    assert decision.passed
    assert (
        "validation_ndcg@10 0.4700 beats the strongest baseline, ease 0.4450, by +0.0250" in decision.reason
    )
    assert "no published model" in decision.reason


def test_the_gate_rejects_a_model_that_loses_to_ease_on_validation_with_the_reason() -> None:
    # Beats popularity and ALS by far, and even EASE on test: only validation decides.
    decision = decide(model(0.72, 0.43, hr=0.80, ndcg=0.50), BASELINES, None)
    assert not decision.passed
    assert decision.reason.startswith("rejected: ")
    assert (
        "validation_ndcg@10 0.4300 does not beat the strongest baseline, ease 0.4450 (-0.0150)"
        in decision.reason
    )
    assert "als 0.4000" in decision.reason
    assert "popularity 0.2500" in decision.reason
    # HR@10 does beat EASE: that check passed and is listed, but one failure is enough.
    assert any(
        "validation_hr@10 0.7200 beats the strongest baseline, ease 0.7100" in c for c in decision.checks
    )


def test_strongest_is_per_metric() -> None:
    mixed = BASELINES | {"als": {"validation_hr@10": 0.74, "validation_ndcg@10": 0.40}}
    assert strongest(mixed, "validation_hr@10") == ("als", 0.74)
    assert strongest(mixed, "validation_ndcg@10") == ("ease", 0.445)
    decision = decide(model(0.73, 0.46), mixed, None)
    assert not decision.passed
    assert "validation_hr@10 0.7300 does not beat the strongest baseline, als 0.7400" in decision.reason


def test_beating_popularity_alone_is_not_enough() -> None:
    decision = decide(model(0.60, 0.35), BASELINES, None)
    assert not decision.passed
    only_popularity = decide(model(0.60, 0.35), BASELINES, None, GateConfig(baselines=("popularity",)))
    assert only_popularity.passed  # a configured subset is honoured
    assert "strongest baseline, popularity" in only_popularity.reason


def test_a_configured_baseline_missing_from_the_run_fails() -> None:
    decision = decide(
        model(0.75, 0.47), BASELINES, None, GateConfig(baselines=("ease", "segment_popularity"))
    )
    assert not decision.passed
    assert "no segment_popularity baseline in this run" in decision.reason


def test_margin_against_the_published_model_on_test_metrics() -> None:
    previous = {"hr@10": 0.72, "ndcg@10": 0.44}
    within = decide(model(0.75, 0.47, 0.715, 0.435), BASELINES, previous, GateConfig(margin=0.01))
    assert within.passed
    behind = decide(model(0.75, 0.47, 0.70, 0.435), BASELINES, previous, GateConfig(margin=0.01))
    assert not behind.passed
    assert "hr@10 0.7000 trails published 0.7200" in behind.reason


def test_missing_or_nan_metrics_fail() -> None:
    assert not decide({"validation_hr@10": 0.75}, BASELINES, None).passed
    assert not decide(model(float("nan"), 0.47), BASELINES, None).passed
    assert not decide(model(0.75, 0.47), {}, None).passed
    assert "no baseline has validation_hr@10" in decide(model(0.75, 0.47), {}, None).reason
    assert not decide(model(0.75, 0.47, hr=float("nan")), BASELINES, {"hr@10": 0.7}).passed


def test_a_metric_the_published_model_lacks_is_not_compared() -> None:
    decision = decide(model(0.75, 0.47), BASELINES, {"hr@10": 0.69})
    assert decision.passed
    assert any("published model has no ndcg@10" in c for c in decision.checks)


def test_the_gate_baselines_setting_names_known_baselines_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from movierec.config import TrainingSettings

    monkeypatch.setenv("ARTIFACT_BUCKET", "artifacts")
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:1")
    assert TrainingSettings().gate_baselines is None  # deployed default: every baseline of the run
    monkeypatch.setenv("GATE_BASELINES", '["popularity", "ease"]')
    assert TrainingSettings().gate_baselines == ("popularity", "ease")
    for bad in ('["nope"]', "[]", "popularity"):
        monkeypatch.setenv("GATE_BASELINES", bad)
        with pytest.raises(ValidationError):
            TrainingSettings()
