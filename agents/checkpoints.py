"""Checkpoints of a training run: atomic writes, only the last few kept, resume from the newest whole one.

Files in ``<run>/checkpoints/`` (``<n>`` = environment steps)::

    model_<n>_steps.zip                  the model (written last: its presence means the set is whole)
    model_vecnormalize_<n>_steps.pkl     the reward normaliser, with train.normalize_reward (an SB3
                                         VecNormalize pickle, from the wrapper or from VecTradingEnv)
    model_replay_buffer_<n>_steps.pkl    off-policy agents with train.save_replay_buffer: the newest only

Every file is written to a temporary name in the same folder and renamed over the final name
(``os.replace``, atomic on POSIX), so a crash never leaves a truncated checkpoint under a final name.
Only the last ``train.keep_checkpoints`` checkpoints are kept; the replay buffer (about
``buffer_size x observation floats x 8`` bytes: observations and next observations in float32) is
kept only with the newest.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from agents.sb3 import load_model
from envs.sim.vec_env import VecTradingEnv

logger = logging.getLogger(__name__)
T = TypeVar("T")

_CKPT = re.compile(r"^model_(\d+)_steps\.zip$")
#: what loading a file cut short mid-write raises (runs written before writes were atomic can hold one)
TRUNCATED = (EOFError, pickle.UnpicklingError, zipfile.BadZipFile)


def model_path(folder: Path, steps: int) -> Path:
    """The model zip of the checkpoint at ``steps``."""
    return folder / f"model_{steps}_steps.zip"


def vecnormalize_path(folder: Path, steps: int) -> Path:
    """The reward normaliser of the checkpoint at ``steps``."""
    return folder / f"model_vecnormalize_{steps}_steps.pkl"


def replay_buffer_path(folder: Path, steps: int) -> Path:
    """The replay buffer of the checkpoint at ``steps``."""
    return folder / f"model_replay_buffer_{steps}_steps.pkl"


def normalization_writer(model: BaseAlgorithm) -> Callable[[Path], None] | None:
    """What writes the model's normalisation statistics to a file (an SB3 ``VecNormalize`` pickle either way).

    The statistics live in SB3's ``VecNormalize`` wrapper (off-policy agents) or inside the
    `VecTradingEnv` itself (``normalize=...``, on-policy agents); None when there are none.
    """
    wrapper = model.get_vec_normalize_env()
    if isinstance(wrapper, VecNormalize):
        return lambda p: wrapper.save(str(p))
    env = model.get_env()
    inner = env.unwrapped if env is not None else None
    if isinstance(inner, VecTradingEnv) and inner.normalize is not None:
        return inner.save_normalization
    return None


def checkpoints_newest_first(run_dir: Path) -> list[tuple[Path, int]]:
    """Every checkpoint zip of a run with its step count, newest first."""
    found = []
    for p in (Path(run_dir) / "checkpoints").glob("model_*_steps.zip"):
        m = _CKPT.match(p.name)
        if m:
            found.append((p, int(m.group(1))))
    return sorted(found, key=lambda x: x[1], reverse=True)


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    """The newest checkpoint zip of a run and its step count (None when there is none)."""
    found = checkpoints_newest_first(run_dir)
    return found[0] if found else None


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path`` (same suffix), then rename it to ``path``."""
    tmp = path.with_name(f".tmp_{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class RollingCheckpointCallback(BaseCallback):
    """Every ``save_freq`` environment steps: write a checkpoint atomically and prune older ones.

    Args:
        save_freq: environment steps between checkpoints (across all envs).
        folder: the run's ``checkpoints/`` folder.
        keep: checkpoints kept (>= 1), newest first.
        save_replay_buffer: write the replay buffer of off-policy agents (kept with the newest only).
    """

    def __init__(self, save_freq: int, folder: Path, keep: int, save_replay_buffer: bool) -> None:
        super().__init__()
        self.save_freq = save_freq
        self.folder = Path(folder)
        self.keep = keep
        self.save_replay_buffer = save_replay_buffer
        self._next = 0

    def _on_training_start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._next = (self.num_timesteps // self.save_freq + 1) * self.save_freq

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.save_freq
            self.save()
        return True

    def save(self) -> None:
        """Write the checkpoint at the current step count, then prune."""
        steps = self.num_timesteps
        write_normalization = normalization_writer(self.model)
        if write_normalization is not None:
            write_atomically(vecnormalize_path(self.folder, steps), write_normalization)
        if self.save_replay_buffer and hasattr(self.model, "save_replay_buffer"):
            write_atomically(replay_buffer_path(self.folder, steps),
                             lambda p: self.model.save_replay_buffer(str(p)))  # type: ignore[attr-defined]
        write_atomically(model_path(self.folder, steps), lambda p: self.model.save(str(p)))
        logger.debug("checkpoint at %d steps written to %s", steps, self.folder)
        self.prune()

    def prune(self) -> None:
        """Delete all but the newest ``keep`` checkpoints, and every replay buffer but the newest one's."""
        found = checkpoints_newest_first(self.folder.parent)
        for path, steps in found[self.keep:]:
            vecnormalize_path(self.folder, steps).unlink(missing_ok=True)
            path.unlink(missing_ok=True)
        newest = found[0][1] if found else None
        for rb in self.folder.glob("model_replay_buffer_*_steps.pkl"):
            if newest is None or rb != replay_buffer_path(self.folder, newest):
                rb.unlink(missing_ok=True)


class TruncatedFile(Exception):
    """A checkpoint file cut short mid-write (``path``: the file; ``__cause__``: the load error)."""

    def __init__(self, path: Path, err: BaseException) -> None:
        super().__init__(f"{path} is incomplete ({type(err).__name__}: {err})")
        self.path = path


def _read(path: Path, load: Callable[[], T]) -> T:
    try:
        return load()
    except TRUNCATED as err:
        raise TruncatedFile(path, err) from err


def _check_fits(path: Path, vec: VecTradingEnv) -> None:
    """Raise naming the spaces when a checkpoint was trained on other observations or actions."""
    data, _, _ = _read(path, lambda: load_from_zip_file(str(path), load_data=True, device="cpu"))
    if data is None:
        return
    for what in ("observation_space", "action_space"):
        saved, now = data.get(what), getattr(vec, what)
        if saved is not None and (type(saved) is not type(now) or getattr(saved, "shape", None) != now.shape
                                  or getattr(saved, "n", None) != getattr(now, "n", None)):
            raise ValueError(
                f"checkpoint {path} does not fit this run's config: its {what.replace('_', ' ')} is {saved} "
                f"(shape {getattr(saved, 'shape', None)}) but the config gives {now} (shape {now.shape}); the "
                "observation is env.window_size x feature columns + 4 account values. Was the run's "
                ".hydra/config.yaml edited? Restore it, or start a new run"
            )


def load_checkpoint(agent: str, device: str, normalize_reward: bool, path: Path, steps: int,
                    vec: VecTradingEnv) -> tuple[BaseAlgorithm, VecEnv]:
    """Load one checkpoint (model, reward normaliser, replay buffer) onto ``vec``."""
    folder = path.parent
    _check_fits(path, vec)
    vn_path = vecnormalize_path(folder, steps)
    if normalize_reward and not vn_path.exists():
        raise ValueError(f"checkpoint {path.name} lacks its reward normalisation {vn_path.name}")
    venv: VecEnv
    if vec.episode_stats:  # statistics inside the env (it reads older runs' VecNormalize files too)
        venv = vec
        if normalize_reward:
            _read(vn_path, lambda: vec.load_normalization(vn_path))
    else:
        venv = VecMonitor(vec)
        if normalize_reward:
            wrapped = venv
            venv = _read(vn_path, lambda: VecNormalize.load(str(vn_path), wrapped))
    model = _read(path, lambda: load_model(agent, path, env=venv, device=device))
    rb_path = replay_buffer_path(folder, steps)
    if rb_path.exists() and hasattr(model, "load_replay_buffer"):
        _read(rb_path, lambda: model.load_replay_buffer(str(rb_path)))  # type: ignore[attr-defined]
    return model, venv


def resume_model(agent: str, device: str, normalize_reward: bool, run_dir: Path,
                 vec: VecTradingEnv) -> tuple[BaseAlgorithm, VecEnv]:
    """Load the newest checkpoint whose files are whole.

    A checkpoint whose file was cut short mid-write (possible only in runs written before writes were
    atomic) is skipped for the one before it, with a warning naming the file. Any other load error (a
    checkpoint that does not fit the config, an unreadable file) fails naming the error and the file.
    """
    found = checkpoints_newest_first(run_dir)
    if not found:
        raise ValueError(
            f"train.resume_from={str(run_dir)!r} has no checkpoints/model_*_steps.zip to resume from; "
            "start a new run instead (checkpoints are written every train.checkpoint_freq steps)"
        )
    first_error: Exception | None = None
    for path, steps in found:
        try:
            model, venv = load_checkpoint(agent, device, normalize_reward, path, steps, vec)
        except TruncatedFile as err:
            logger.warning("checkpoint at %d steps is incomplete: %s, probably cut short by a crash; "
                           "trying the one before it", steps, err)
            first_error = first_error or err
            continue
        except ValueError:
            raise
        except Exception as err:
            raise ValueError(f"cannot resume from checkpoint {path}: {type(err).__name__}: {err}") from err
        logger.info("resuming %s from %s at %d steps", agent, path.name, model.num_timesteps)
        return model, venv
    raise ValueError(f"no checkpoint in {run_dir / 'checkpoints'} loads; the newest failed with: {first_error}")
