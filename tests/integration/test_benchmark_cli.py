"""``python -m training_job benchmark`` and ``make-ncf-split`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training_job.data import make_ncf_split, write_ncf
from training_job.sources.synthetic import SyntheticConfig, generate

REPO = Path(__file__).resolve().parents[2]
METRICS = {"hr@10", "ndcg@10", "full_hr@10"}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training_job", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_benchmark_prints_exactly_one_json_object(tmp_path: Path) -> None:
    data, _ = make_ncf_split(generate(SyntheticConfig(n_users=120, n_movies=400, n_events=5_000, seed=8)))
    write_ncf(tmp_path, data)
    done = run_cli(
        "benchmark",
        "--train", str(tmp_path / "train.rating"),
        "--test", str(tmp_path / "test.rating"),
        "--negatives", str(tmp_path / "test.negative"),
        "--budget-seconds", "2",
        "--max-trials", "1",
        "--max-epochs", "2",
        "--threads", "1",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") == 1
    assert done.stdout.endswith("\n")
    summary = json.loads(done.stdout)
    assert set(summary) == {"model", "sequence", "baselines"}
    sequence = summary["sequence"]
    assert set(sequence) >= METRICS | {"validation_ndcg@10", "params", "samples_per_second", "artifact_bytes"}
    assert sequence["params"]["loss"] in {"bce", "softmax"}
    assert set(sequence["versus_strongest"]) == {"validation", "test"}
    model = summary["model"]
    assert set(model) >= METRICS
    assert {"train_seconds", "params"} <= set(model)
    assert model["samples_per_second"] > 0
    assert {"factors", "mlp_layers", "learning_rate", "epochs"} <= set(model["params"])
    assert set(summary["baselines"]) == {"popularity", "als", "ease"}
    for values in summary["baselines"].values():
        assert set(values) >= METRICS | {"validation_hr@10", "validation_ndcg@10"}
    assert summary["baselines"]["ease"]["params"]["lambda"] > 0
    assert set(model["gate"]) == {"passed", "reason"}
    assert "strongest baseline" in model["gate"]["reason"]
    assert set(model["versus_strongest"]) == {"validation", "test"}
    assert 0.0 <= model["hr@10"] <= 1.0


def test_bad_arguments_fail_with_usage() -> None:
    done = run_cli("benchmark", "--train", "x")
    assert done.returncode == 2
    assert "required" in done.stderr


@pytest.mark.movielens
def test_make_ncf_split_on_movielens(movielens_small: Path, tmp_path: Path) -> None:
    done = run_cli("make-ncf-split", str(movielens_small), str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    train = (tmp_path / "train.rating").read_text().splitlines()
    test = (tmp_path / "test.rating").read_text().splitlines()
    negatives = (tmp_path / "test.negative").read_text().splitlines()
    assert len(test) == len(negatives) == 610  # one per user
    assert len(train) + len(test) == 100_836  # every rating, each pair once
    user, item, rating, timestamp = train[0].split("\t")
    assert int(user) >= 0
    assert int(item) >= 0
    assert 0.5 <= float(rating) <= 5.0
    assert int(timestamp) > 0
    head, *items = negatives[0].split("\t")
    test_user, test_item = test[0].split("\t")[:2]
    assert head == f"({test_user},{test_item})"
    assert len(items) == 99
    assert test_item not in items
    id_map = json.loads((tmp_path / "id_map.json").read_text())
    assert len(id_map["users"]) == 610
