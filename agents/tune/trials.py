"""The config of one trial: searched keys checked against the base config, samples applied, seeds derived."""

from __future__ import annotations

import copy
import inspect
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from agents.config import to_run_config
from agents.tune.dotted import get_key, set_key
from agents.tune.space import ParamSpec


def _constructor_args(obj: Any) -> set[str]:
    return set(inspect.signature(obj.__init__).parameters) - {"self", "args", "kwargs"}


def _free_form_ok(base: Mapping[str, Any], parts: list[str], algo: Any, algo_args: set[str]) -> tuple[bool, str]:
    """Whether a key missing from the base config is a constructor keyword; else a hint (may be '')."""
    if parts[:2] == ["agent", "algo_kwargs"] and len(parts) == 3:
        return parts[2] in algo_args, f"{algo.__name__} accepts {sorted(algo_args)}"
    if parts[0] == "agent" and len(parts) == 2 and parts[1] in algo_args:
        return False, f"did you mean agent.algo_kwargs.{parts[1]}? (SB3 constructor keywords live there)"
    if parts[:2] == ["agent", "policy_kwargs"] and len(parts) == 3:
        policy = algo.policy_aliases.get(str(get_key(base, "agent.policy")))
        return policy is not None and parts[2] in _constructor_args(policy), ""
    return False, ""


def check_space_keys(base: Mapping[str, Any], specs: Sequence[ParamSpec]) -> None:
    """Fail naming every searched key that the base config (or the algorithm) does not have.

    Keys under ``agent.algo_kwargs.`` are checked against the algorithm's constructor and keys
    under ``agent.policy_kwargs.`` against its policy's (both are free-form in the config).
    """
    from agents.sb3 import algorithm_class

    algo = algorithm_class(str(get_key(base, "agent.name")))
    algo_args = _constructor_args(algo) - {"policy", "env"}
    bad: list[str] = []
    hints: list[str] = []
    for s in specs:
        try:
            get_key(base, s.key)
            continue
        except KeyError:
            pass
        ok, hint = _free_form_ok(base, s.key.split("."), algo, algo_args)
        if ok:
            continue
        bad.append(s.key)
        if hint:
            hints.append(hint)
    if bad:
        raise ValueError(
            f"tune.space key(s) {bad} do not exist in the base config; search only keys of conf/config.yaml's "
            f"groups (e.g. agent.algo_kwargs.learning_rate, env.window_size)" + (f"; {hints[0]}" if hints else "")
        )


def trial_index_of(trial_id: str) -> int:
    """A stable per-trial seed offset: the counter at the end of a random-search trial id
    (``"83f63_00004"`` -> 4), else (Optuna's ids such as ``"a750d092"``) ``crc32(trial_id) % 1_000_000``."""
    tail = trial_id.rsplit("_", 1)[-1]
    if "_" in trial_id and tail.isdigit():
        return int(tail)
    return zlib.crc32(trial_id.encode()) % 1_000_000


def trial_config(base: Mapping[str, Any], specs: Sequence[ParamSpec], sample: Mapping[str, Any],
                 trial_index: int, torch_threads: int = 1) -> dict[str, Any]:
    """The plain config of one trial: base + resolved samples, derived seed, trial-friendly run settings.

    Args:
        base: the resolved base config (plain containers, absolute data paths).
        specs: the parsed search space.
        sample: Tune's sampled values, keyed by the dotted keys.
        trial_index: the trial's seed offset (`trial_index_of`); the seed becomes
            ``train.seed + trial_index`` unless ``train.seed`` is searched.
        torch_threads: torch threads of the trial (its CPUs).
    """
    raw = copy.deepcopy(dict(base))
    raw.pop("tune", None)
    searched = {s.key for s in specs}
    for s in specs:
        set_key(raw, s.key, s.resolve(sample[s.key]))
    if "train.seed" not in searched:
        raw["train"]["seed"] = int(raw["train"]["seed"]) + int(trial_index)
    raw["train"]["torch_threads"] = int(torch_threads)
    raw["train"]["progress_bar"] = False
    raw["train"]["resume_from"] = None
    raw["task_name"] = "train"
    return raw


def validate_candidates(base: Mapping[str, Any], specs: Sequence[ParamSpec]) -> None:
    """Build a typed config for every candidate value (bounds / choices) so bad values fail at start-up."""
    for s in specs:
        for value in s.candidates():
            raw = copy.deepcopy(dict(base))
            raw.pop("tune", None)
            set_key(raw, s.key, value)
            try:
                to_run_config(raw)
            except (ValueError, TypeError) as e:
                raise ValueError(f"tune.space.{s.key}: candidate value {value!r} is invalid: {e}") from e
