"""Dotted-key editing of plain config trees (``"agent.algo_kwargs.learning_rate"``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_key(tree: Mapping[str, Any], key: str) -> Any:
    """The value at the dotted ``key``.

    Raises:
        KeyError: ``key`` when any part of the path is missing.
    """
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def set_key(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set the dotted ``key`` to ``value`` in place, creating missing mappings on the way."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value

