"""The model-age limit (``env.risk.max_model_age``) resolved against a finished run folder.

The kernel's rule is absolute: decisions at bars opening at or after ``trained_until +
max_model_age`` may only reduce the position (`envs.sim.risk.risk_regime`, reason ``model_age``).
`resolve_model_age` fills ``trained_until`` from the run, once at start-up, for evaluation of a
finished run (`agents.evaluate_run`, the training run's own test report) and paper mode, so the three
apply the same rule at the same bar.

Which training end counts:

- **The agent** never retrains after its run: its training end is the close of the last bar of the
  run's training split (``splits.json``, ``train.last_bar`` + one bar), the newest data its policy
  weights were fitted on. Validation (model selection) does not renew it.
- **A forecaster** continues its walk-forward schedule in evaluation and paper mode: each refit (and
  online update) renews it, so its age at any bar is at most one fit interval (``update_every``, else
  ``refit_every`` bars) plus ``horizon + embargo`` bars. A run whose forecaster can grow older than
  ``max_model_age`` between fits is refused at start-up (lower ``forecaster.refit_every`` /
  ``update_every`` or raise the limit), so the agent's training end is the one that expires.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from envs.market.times import iso_utc, parse_timeframe, to_ms

if TYPE_CHECKING:
    from agents.config import RunConfig

logger = logging.getLogger(__name__)

#: the split spans a training run writes (`agents.train.run`)
SPLITS_FILE = "splits.json"


def training_end_ms(run_dir: str | Path, timeframe: str) -> int:
    """The close of the run's last training bar, ms UTC (``splits.json``'s ``train.last_bar`` + one bar).

    Raises:
        ValueError: when the run folder has no readable ``splits.json`` with a ``train`` span.
    """
    path = Path(run_dir) / SPLITS_FILE
    try:
        last_bar = json.loads(path.read_text())["train"]["last_bar"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"env.risk.max_model_age needs the run's training end, read from {path} "
                         f"({type(err).__name__}: {err}); train the run to completion first, or set "
                         "env.risk.max_model_age=null") from err
    return to_ms(last_bar, f"{path} train.last_bar") + parse_timeframe(timeframe)


def resolve_model_age(cfg: RunConfig, run_dir: str | Path) -> RunConfig:
    """``cfg`` with ``env.risk.trained_until`` set from the run when ``max_model_age`` is on (else unchanged).

    Raises:
        ValueError: without the run's ``splits.json``; when ``trained_until`` was set to another time;
            when the run's forecaster can grow older than the limit between its fits.
    """
    risk = cfg.env.risk
    age_ms = risk.max_age_ms
    if age_ms is None:
        return cfg
    end = training_end_ms(run_dir, cfg.data.timeframe)
    if risk.trained_until is not None and risk.trained_until_ms != end:
        raise ValueError(f"env.risk.trained_until={risk.trained_until!r} differs from the run's training end "
                         f"{iso_utc(end)} ({Path(run_dir) / SPLITS_FILE}): leave it unset, the run sets it")
    check_forecaster_age(cfg)
    resolved = dataclasses.replace(risk, trained_until=iso_utc(end))
    logger.info("model age limit %s: training data ended %s, decisions from %s on may only reduce the position",
                risk.max_model_age, iso_utc(end), iso_utc(resolved.model_expires_ms))
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, risk=resolved))


def check_forecaster_age(cfg: RunConfig) -> None:
    """Refuse a forecaster whose age between fits can exceed ``env.risk.max_model_age`` (it would expire
    before the agent); training calls it at start, so such a run fails before it trains."""
    fc = cfg.forecaster
    age_ms = cfg.env.risk.max_age_ms
    if age_ms is None or not fc.enabled:
        return
    every = fc.update_every or fc.refit_every
    oldest_ms = (every + fc.horizon + fc.embargo) * parse_timeframe(cfg.data.timeframe)
    if oldest_ms > age_ms:
        raise ValueError(
            f"env.risk.max_model_age={cfg.env.risk.max_model_age!r} is shorter than the forecaster's age between "
            f"fits ({every} + horizon {fc.horizon} + embargo {fc.embargo} bars of {cfg.data.timeframe} = "
            f"{oldest_ms / 86_400_000:g} days): lower forecaster.refit_every / update_every or raise max_model_age")
