"""Dotted-key editing of plain config trees (``"agent.algo_kwargs.learning_rate"``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


def flatten(tree: Mapping[str, Any], is_leaf: Callable[[Any], bool], where: str = "") -> dict[str, Any]:
    """``{"a": {"b": leaf}, "c.d": leaf}`` -> ``{"a.b": leaf, "c.d": leaf}`` (dotted and nested keys mix).

    Args:
        tree: nested mappings whose keys may themselves be dotted.
        is_leaf: whether a value is a leaf (everything that is not a mapping is one).
        where: the dotted prefix of ``tree``, used in error messages and in the returned keys.

    Raises:
        ValueError: naming a key given twice (once dotted, once nested).
    """
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{where}.{k}" if where else str(k)
        sub = flatten(v, is_leaf, key) if isinstance(v, Mapping) and not is_leaf(v) else {key: v}
        for sk, sv in sub.items():
            if sk in out:
                raise ValueError(f"{sk} is given twice (once as a dotted key, once nested); keep one")
            out[sk] = sv
    return out
