"""The search-space language: ``tune.space`` entries parsed into `ParamSpec` s and Ray Tune domains.

One entry per dotted config key, as a mapping or as the shorthand string ``"dist(args)"``::

    agent.algo_kwargs.learning_rate: {dist: loguniform, low: 1.0e-5, high: 1.0e-3}
    agent.algo_kwargs.learning_rate: loguniform(1.0e-5, 1.0e-3)          # the same
    agent.algo_kwargs.n_steps: {dist: choice, values: [128, 256, 512]}
    agent.policy_kwargs.net_arch: {dist: choice, values: {small: [64, 64], medium: [256, 256]}}
    agent.algo_kwargs.batch_size: {dist: grid, values: [64, 128]}      # searcher=random only

``dist`` is one of uniform / loguniform (``low``, ``high``), quniform / qloguniform (plus ``q``),
randint / lograndint (``low`` inclusive, ``high`` exclusive), qrandint (``q``), choice and grid
(``values``; a mapping of names to values samples the names, so lists such as ``net_arch`` stay
Optuna-friendly and show as names in the results).
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agents.tune.dotted import flatten
from agents.tune.settings import fail

RANGE_DISTS = ("uniform", "loguniform", "quniform", "qloguniform", "randint", "lograndint", "qrandint")
VALUE_DISTS = ("choice", "grid")
INT_DISTS = ("randint", "lograndint", "qrandint")
FIELDS = ("dist", "low", "high", "q", "values")


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One searched config key.

    Attributes:
        key: dotted config key, e.g. ``agent.algo_kwargs.learning_rate``.
        dist: distribution name (see `RANGE_DISTS`, `VALUE_DISTS`).
        low, high: range bounds (range distributions; ``high`` exclusive for the integer ones).
        q: quantisation step (q* distributions), or None.
        values: candidate values (choice/grid).
        names: names of the values when they were given as a mapping (sampled instead of the values).
    """

    key: str
    dist: str
    low: float | None = None
    high: float | None = None
    q: float | None = None
    values: tuple[Any, ...] = ()
    names: tuple[str, ...] | None = None

    def resolve(self, sampled: Any) -> Any:
        """Config value for a sampled value (named choices map back to their value)."""
        if self.names is not None:
            if sampled not in self.names:
                raise ValueError(f"{self.key}: sampled name {sampled!r} not among {list(self.names)}")
            return copy.deepcopy(self.values[self.names.index(sampled)])
        return sampled

    def candidates(self) -> list[Any]:
        """Representative config values to validate at start-up (bounds or every choice)."""
        if self.dist in VALUE_DISTS:
            return [copy.deepcopy(v) for v in self.values]
        assert self.low is not None and self.high is not None
        if self.dist in INT_DISTS:
            return [int(self.low), int(self.high) - 1 if self.dist != "qrandint" else int(self.high)]
        return [float(self.low), float(self.high)]


_SHORTHAND = re.compile(r"^\s*([a-z_]+)\s*\((.*)\)\s*$", re.DOTALL)


def expand_shorthand(where: str, text: str) -> dict[str, Any]:
    """``"loguniform(1e-5, 1e-3)"`` -> ``{dist: loguniform, low: 1e-5, high: 1e-3}``;
    ``"choice([16, 32])"`` -> ``{dist: choice, values: [16, 32]}``."""
    m = _SHORTHAND.match(text)
    if m is None:
        fail(where, text, "write a distribution as a mapping {dist: ..., ...} or as 'name(args)', "
                          "e.g. 'loguniform(1e-5, 1e-3)' or 'choice([16, 32, 64])'")
    assert m is not None
    dist, args_text = m.group(1), m.group(2)
    try:
        args: tuple[Any, ...] = ast.literal_eval(f"({args_text},)") if args_text.strip() else ()
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{where}={text!r} is invalid: arguments must be Python literals ({e})") from e
    if dist in VALUE_DISTS:
        if len(args) != 1:
            fail(where, text, f"{dist}(...) takes one list (or dict) of values, e.g. {dist}([16, 32])")
        return {"dist": dist, "values": args[0]}
    if dist in RANGE_DISTS:
        names = ("low", "high", "q") if dist.startswith("q") else ("low", "high")
        if len(args) != len(names):
            fail(where, text, f"{dist}(...) takes {', '.join(names)}")
        return {"dist": dist, **dict(zip(names, args, strict=True))}
    fail(where, dist, f"unknown dist; choose one of {RANGE_DISTS + VALUE_DISTS}")
    raise AssertionError  # unreachable: fail raises


def _range_spec(where: str, key: str, entry: Mapping[str, Any]) -> ParamSpec:
    dist = entry["dist"]
    if "low" not in entry or "high" not in entry:
        fail(where, dict(entry), f"dist={dist} needs low and high")
    low, high = float(entry["low"]), float(entry["high"])
    if not low < high:
        fail(where, dict(entry), "needs low < high")
    if "log" in dist and low <= 0:
        fail(where, dict(entry), f"dist={dist} needs low > 0")
    q = entry.get("q")
    if dist.startswith("q") and (q is None or float(q) <= 0):
        fail(where, dict(entry), f"dist={dist} needs a step q > 0")
    return ParamSpec(key, dist, low, high, None if q is None else float(q))


def _value_spec(where: str, key: str, entry: Mapping[str, Any]) -> ParamSpec:
    dist, values = entry["dist"], entry.get("values")
    if isinstance(values, Mapping):
        if not values:
            fail(where, dict(entry), "values is empty")
        return ParamSpec(key, dist, values=tuple(values.values()), names=tuple(str(n) for n in values))
    if isinstance(values, Sequence) and not isinstance(values, str) and len(values) > 0:
        for v in values:
            if not (v is None or isinstance(v, (bool, int, float, str))):
                fail(where, v, "choice/grid values must be scalars; give lists or mappings as named "
                               "values, e.g. {small: [64, 64], large: [256, 256]}")
        return ParamSpec(key, dist, values=tuple(values))
    fail(where, dict(entry), f"dist={dist} needs a non-empty list (or mapping) of values")
    raise AssertionError  # unreachable: fail raises


def parse_entry(key: str, entry: Any) -> ParamSpec:
    """Parse one ``tune.space`` entry (mapping or shorthand string) for the dotted ``key``.

    Raises:
        ValueError: naming ``tune.space.<key>`` for an unknown distribution or missing/invalid arguments.
    """
    where = f"tune.space.{key}"
    if isinstance(entry, str):
        entry = expand_shorthand(where, entry)
    if not isinstance(entry, Mapping) or "dist" not in entry:
        fail(where, entry, "must be a mapping with 'dist' (e.g. {dist: loguniform, low: 1e-5, high: 1e-3})")
    dist = entry["dist"]
    allowed = ("dist", "low", "high", "q") if dist in RANGE_DISTS else ("dist", "values")
    extra = set(entry) - set(allowed if dist in RANGE_DISTS + VALUE_DISTS else FIELDS)
    if extra:
        fail(where, dict(entry), f"unknown field(s) {sorted(extra)} for dist={dist}; allowed: {', '.join(allowed)} "
                                 "(to replace an entry from the command line, give it as one string, e.g. "
                                 f"{where}='loguniform(1e-5,1e-3)')")
    if dist in RANGE_DISTS:
        return _range_spec(where, key, entry)
    if dist in VALUE_DISTS:
        return _value_spec(where, key, entry)
    fail(where, entry["dist"], f"unknown dist; choose one of {RANGE_DISTS + VALUE_DISTS}")
    raise AssertionError  # unreachable: fail raises


def is_entry(value: Any) -> bool:
    """Whether a ``tune.space`` value is one entry (a shorthand string or a mapping with any of `FIELDS`)."""
    return not isinstance(value, Mapping) or any(k in value for k in FIELDS)


def flat_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """``tune.space`` keyed by dotted config keys, whether written nested or dotted (both may mix)."""
    try:
        return flatten(space, is_entry)
    except ValueError as e:
        raise ValueError(f"tune.space: {e}") from e


def parse_space(space: Mapping[str, Any]) -> list[ParamSpec]:
    """Parse ``tune.space`` into `ParamSpec` s, in order (see `parse_entry`).

    Entries may be nested (``agent: {algo_kwargs: {learning_rate: ...}}``, as the presets write them, so
    that a command-line override such as ``tune.space.agent.algo_kwargs.learning_rate.high=1e-4``
    narrows one bound and ``tune.space.agent.algo_kwargs.learning_rate='loguniform(1e-5,1e-4)'``
    replaces the entry) or keyed by dotted keys (``agent.algo_kwargs.learning_rate: ...``).
    """
    return [parse_entry(key, entry) for key, entry in flat_space(space).items()]


def to_tune_space(specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Ray Tune's ``param_space`` (flat, keyed by the dotted config keys) for ``specs``."""
    from ray import tune

    ranges = {"uniform": tune.uniform, "loguniform": tune.loguniform}
    quantised = {"quniform": tune.quniform, "qloguniform": tune.qloguniform}
    integers = {"randint": tune.randint, "lograndint": tune.lograndint}
    out: dict[str, Any] = {}
    for s in specs:
        lo, hi, q = float(s.low or 0.0), float(s.high or 0.0), float(s.q or 0.0)  # set for range dists
        choices = list(s.names if s.names is not None else s.values)
        if s.dist in ranges:
            out[s.key] = ranges[s.dist](lo, hi)
        elif s.dist in quantised:
            out[s.key] = quantised[s.dist](lo, hi, q)
        elif s.dist in integers:
            out[s.key] = integers[s.dist](int(lo), int(hi))
        elif s.dist == "qrandint":
            out[s.key] = tune.qrandint(int(lo), int(hi), int(q))
        elif s.dist == "choice":
            out[s.key] = tune.choice(choices)
        elif s.dist == "grid":
            out[s.key] = tune.grid_search(choices)
        else:  # parse_entry only produces the above
            raise AssertionError(s.dist)
    return out
