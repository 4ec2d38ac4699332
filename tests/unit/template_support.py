"""What the template tests share (test_template*.py): where the templates are, and a resource filter."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURE_TEMPLATE = REPO_ROOT / "tests" / "fixtures" / "runner_app" / "template.yaml"


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}
