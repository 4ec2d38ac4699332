"""`make demo ARGS=--once` as a person runs it, on a small dataset: every answer it promises appears."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_prints_every_kind_of_answer() -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    demo = subprocess.run(
        [sys.executable, "-m", "infra.local", "demo", "--once", "--port", "0", "--events", "4000",
         "--budget-seconds", "20"],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip

    assert demo.returncode == 0, demo.stderr[-3000:]
    out = demo.stdout
    for source in ("personalized", "online", "regional_popular", "global_popular"):
        assert f'"source": "{source}"' in out, f"no {source} answer in:\n{out}"
    assert "\n401 " in out
    assert "\n400 " in out
    assert "$ curl -s 'http://127.0.0.1:" in out


def test_a_bad_movielens_path_is_one_clear_line() -> None:
    demo = subprocess.run(
        [sys.executable, "-m", "infra.local", "demo", "--once", "--movielens", "/nonexistent/ml-1m"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert demo.returncode == 2
    assert demo.stderr.startswith("error: /nonexistent/ml-1m does not exist; expected a MovieLens folder")
    assert demo.stderr.count("\n") == 1
