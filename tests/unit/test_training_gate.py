"""The quality gate passes only a model that beats popularity and keeps up with the published one."""

from __future__ import annotations

from training_job.gate import GateConfig, decide

POPULARITY = {"popularity": {"hr@10": 0.45, "ndcg@10": 0.25}}


def test_first_model_that_beats_popularity_passes() -> None:
    decision = decide({"hr@10": 0.7, "ndcg@10": 0.42}, POPULARITY, None)
    assert decision.passed
    assert "beats popularity" in decision.reason
    assert "no published model" in decision.reason


def test_a_model_not_beating_popularity_is_rejected_with_the_reason() -> None:
    decision = decide({"hr@10": 0.7, "ndcg@10": 0.25}, POPULARITY, None)
    assert not decision.passed
    assert "ndcg@10 0.2500 does not beat popularity 0.2500" in decision.reason


def test_margin_against_the_published_model() -> None:
    previous = {"hr@10": 0.72, "ndcg@10": 0.44}
    within = decide({"hr@10": 0.715, "ndcg@10": 0.435}, POPULARITY, previous, GateConfig(margin=0.01))
    assert within.passed
    behind = decide({"hr@10": 0.70, "ndcg@10": 0.435}, POPULARITY, previous, GateConfig(margin=0.01))
    assert not behind.passed
    assert "hr@10 0.7000 trails published 0.7200" in behind.reason


def test_missing_or_nan_metrics_fail() -> None:
    assert not decide({"hr@10": 0.7}, POPULARITY, None).passed
    assert not decide({"hr@10": float("nan"), "ndcg@10": 0.4}, POPULARITY, None).passed
    assert not decide({"hr@10": 0.7, "ndcg@10": 0.4}, {}, None).passed


def test_a_metric_the_published_model_lacks_is_not_compared() -> None:
    decision = decide({"hr@10": 0.7, "ndcg@10": 0.42}, POPULARITY, {"hr@10": 0.69})
    assert decision.passed
    assert any("published model has no ndcg@10" in c for c in decision.checks)
