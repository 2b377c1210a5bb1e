"""Hydra entry points of the scripts: checks that run before Hydra writes anything, one-line config errors.

Every script's ``main`` is decorated with `hydra_entry` instead of ``hydra.main``. Before Hydra
composes the config (and saves ``.hydra/config.yaml``, ``overrides.yaml``, ``hydra.yaml`` and the
log file) the command line is checked:

- an override whose name looks like a credential (``key``, ``api_key``, ``secret``, ``password``,
  ``token``, ``passphrase``) is refused without echoing its value: keys come only from the
  environment (``QUANTGYM_<EXCHANGE>_API_KEY`` / ``_SECRET`` or a git-ignored ``.env``);
- a config group given a list (``env=[spot,perp]``, which Hydra would merge silently) is refused.

A configuration error (composition: unknown key, wrong type, missing group option; or a
`ConfigError` / ``ValueError`` raised while the script starts) prints one line to stderr and exits
with status 2; the folder Hydra created for the run is removed when it holds only Hydra's own files.
``HYDRA_FULL_ERROR=1`` shows the full traceback instead.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

#: exit status of a configuration or input error (1 stays "the tool ran and found a problem")
CONFIG_ERROR_EXIT = 2
CREDENTIAL_WORDS = frozenset({"key", "apikey", "secret", "password", "passwd", "token", "passphrase"})
CREDENTIAL_HINT = ("exchange keys come only from the environment: set QUANTGYM_<EXCHANGE>_API_KEY and "
                   "QUANTGYM_<EXCHANGE>_SECRET (e.g. QUANTGYM_BINANCE_API_KEY) or put them in a git-ignored .env")
#: files Hydra writes into a run folder before the task runs (plus ``<job>.log``)
_HYDRA_FILES = {".hydra"}

F = TypeVar("F", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A configuration the script cannot start with; printed on one line, exit status 2."""


def _override_key(arg: str) -> str | None:
    if arg.startswith("-") or "=" not in arg:
        return None
    return arg.split("=", 1)[0].lstrip("+~")


def looks_like_credential(key: str) -> bool:
    """True when a config key's name (any dotted part, split at ``_``/``-``, or camelCase) names a credential."""
    for part in re.split(r"[./]", key):
        words = re.split(r"[_\-]", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", part).lower())
        if CREDENTIAL_WORDS.intersection(words) or part.lower().endswith("apikey"):
            return True
    return False


def check_command_line(args: Sequence[str], conf_dir: Path) -> None:
    """Refuse credential overrides and group lists; raises `ConfigError` (the value is never echoed)."""
    groups = {p.name for p in conf_dir.iterdir() if p.is_dir()}
    for arg in args:
        key = _override_key(arg)
        if key is None:
            continue
        if looks_like_credential(key):
            raise ConfigError(f"refusing the override {key!r}: credentials are never passed on the command line "
                              f"(Hydra would save them in the run folder); {CREDENTIAL_HINT}")
        value = arg.split("=", 1)[1].strip()
        if key in groups and value.startswith("["):
            raise ConfigError(f"{key}={value} selects several {key} presets, which Hydra would merge silently; "
                              f"choose one ({key}=<name>), or sweep them with -m {key}=a,b")


def one_line(err: BaseException) -> str:
    """The error's message on one line (Hydra and OmegaConf messages span several)."""
    text = " ".join(str(err).split())
    cause = err.__cause__
    if isinstance(cause, OmegaConfBaseException) and str(cause).split("\n")[0] not in text:
        text += ": " + " ".join(str(cause).split())
    return text


def _remove_if_bookkeeping_only(run_dir: Path | None) -> None:
    """Delete a run folder holding only Hydra's files (``.hydra/`` and ``*.log``): a start-up error."""
    if run_dir is None or not (run_dir / ".hydra").is_dir() or run_dir.resolve() == Path.cwd().resolve():
        return  # only a folder Hydra made for this job (tools without one run in the current folder)
    if all(p.name in _HYDRA_FILES or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)


_CONFIG_ERRORS = (HydraException, OmegaConfBaseException, ValueError)


def _exit_config_error(err: BaseException) -> None:
    sys.stderr.write(f"config error: {one_line(err)}\n")
    raise SystemExit(CONFIG_ERROR_EXIT)


def hydra_entry(config_name: str, config_path: str = "../conf") -> Callable[[F], Callable[[], Any]]:
    """``hydra.main`` with the checks of this module; use in place of ``@hydra.main(...)``.

    Args:
        config_name: the primary config in ``conf/`` (``config``, ``download``, ...).
        config_path: the config folder relative to the script.
    """
    def decorate(task: F) -> Callable[[], Any]:
        full = os.environ.get("HYDRA_FULL_ERROR") == "1"

        @functools.wraps(task)
        def job(cfg: DictConfig) -> Any:
            run_dir = Path(HydraConfig.get().runtime.output_dir)
            try:
                return task(cfg)
            except _CONFIG_ERRORS as err:
                _remove_if_bookkeeping_only(run_dir)
                if full:
                    raise
                _exit_config_error(err)

        main = hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(job)
        conf_dir = (Path(sys.modules[task.__module__].__file__ or ".").resolve().parent / config_path).resolve()

        @functools.wraps(task)
        def entry() -> Any:
            try:
                check_command_line(sys.argv[1:], conf_dir)
                os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises composition errors to us
                try:
                    return main()
                finally:
                    if not full:
                        os.environ.pop("HYDRA_FULL_ERROR", None)
            except _CONFIG_ERRORS as err:
                if full:
                    raise
                _exit_config_error(err)

        return entry

    return decorate
