"""Building a frozen config dataclass from a plain mapping (a Hydra node), refusing unknown keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def from_mapping(cls: type[T], mapping: Mapping[str, Any], node: str) -> T:
    """``cls(**mapping)``; a key that is not a field of ``cls`` raises ``ValueError`` naming ``node``.

    Raises:
        ValueError: ``unknown <node> key(s) [...]; allowed: [...]`` (or the dataclass's own range error).
    """
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ValueError(f"unknown {node} key(s) {unknown}; allowed: {sorted(names)}")
    return cls(**dict(mapping))
