"""Fixtures the unit tests share: the project's template.yaml, as loaded and as resolved."""

from __future__ import annotations

from typing import Any

import pytest

from infra.local.template import DEFAULT_TEMPLATE, Stack, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """template.yaml as parsed (intrinsic functions kept), fresh for each test module."""
    return load_template(DEFAULT_TEMPLATE)


@pytest.fixture(scope="module")
def stack() -> Stack:
    """template.yaml resolved as CloudFormation would for a local stack (parameter defaults)."""
    return Stack.load(DEFAULT_TEMPLATE)
