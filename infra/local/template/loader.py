"""``template.yaml`` parsed, CloudFormation short tags (``!Ref``, ``!GetAtt`` ...) as their long forms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.local.errors import UsageError


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long (JSON) forms."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute.With.Dots -> ["Resource", "Attribute.With.Dots"]
        logical_id, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [logical_id, attribute]}
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: Path) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short tags included; UsageError when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read template {path}: {error.strerror}") from error
    try:
        document = yaml.load(text, Loader=_CfnLoader)
    except yaml.YAMLError as error:
        raise UsageError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise UsageError(f"{path} is not a CloudFormation template (no Resources)")
    return document
