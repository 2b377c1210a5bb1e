"""Validate bars from a Parquet file or the store; print the report; exit 1 if a `raise` rule breaks,
2 if the check could not run (bad config or input).

Example:
    python scripts/validate.py data.path=data/sample/btcusdt_1h.parquet
    python scripts/validate.py data.store_root=data/store data.symbol=BTC/USDT data.timeframe=1m
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

import pandas as pd
from hydra.core.config_store import ConfigStore
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.cli import hydra_entry
from agents.config import writable_structured
from agents.data import read_bars
from envs.data.cleaning import CleaningConfig, check_fill, clean
from envs.data.quality import validate
from envs.data.resample import parse_timeframe


@dataclass(frozen=True, slots=True)
class ValidateDataConfig:
    """Where the bars come from: ``path`` (a Parquet file) or the store (``store_root`` + series)."""

    path: str | None = None
    timeframe: str | None = None
    store_root: str | None = None
    exchange: str = "binance"
    symbol: str | None = None
    start: str | None = None
    end: str | None = None


@dataclass(frozen=True, slots=True)
class ValidateAppConfig:
    """Schema of ``conf/validate.yaml``."""

    data: ValidateDataConfig = field(default_factory=ValidateDataConfig)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    format: str = "text"
    clean_output: str | None = None
    log_level: str = "WARNING"


ConfigStore.instance().store(name="validate_schema", node=writable_structured(ValidateAppConfig))


def load_bars(data: ValidateDataConfig) -> pd.DataFrame:
    """Read the bars named by ``data`` (file or store span) with the one reader, unchecked (that is our job)."""
    return read_bars(None if data.path is None else to_absolute_path(data.path),
                     None if data.store_root is None else to_absolute_path(data.store_root),
                     data.exchange, data.symbol, data.timeframe, data.start, data.end)


def run(cfg: DictConfig) -> int:
    """Load, validate and print; optionally write the cleaned bars. Returns the exit code.

    0 = no rule with policy ``raise`` broken, 1 = at least one broken, 2 = could not run (config or
    input error: missing file, a folder, no rows, timestamps not in ms, an impossible forward fill...).
    """
    try:
        app: ValidateAppConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
        tf_ms = None if app.data.timeframe is None else parse_timeframe(app.data.timeframe)
        if app.format not in ("text", "markdown"):
            raise ValueError(f"format={app.format!r} is invalid: use 'text' or 'markdown'")
        logging.getLogger().setLevel(app.log_level)
        df = load_bars(app.data)
        report = validate(df, tf_ms, policy=app.cleaning)
        if app.cleaning.gaps == "forward_fill" and report.timeframe_ms is not None:
            check_fill(df["timestamp"].to_numpy(), report.timeframe_ms, app.cleaning.max_fill_bars)
    except (ValueError, FileNotFoundError, OSError, MemoryError) as e:
        print(f"validate: {e}", file=sys.stderr)
        return 2
    print(report.to_markdown() if app.format == "markdown" else report.to_text())
    if not report.ok:
        return 1
    if app.clean_output is not None:
        try:
            cleaned, crep = clean(df, app.cleaning, tf_ms)
            cleaned.to_parquet(to_absolute_path(app.clean_output), index=False)
        except (ValueError, OSError, MemoryError) as e:
            print(f"validate: could not write the cleaned bars: {e}", file=sys.stderr)
            return 2
        print(crep.to_markdown() if app.format == "markdown" else crep.to_text())
        print(f"cleaned bars written to {app.clean_output}")
    return 0


@hydra_entry("validate")
def main(cfg: DictConfig) -> None:
    """Entry point: exit with ``run``'s code."""
    sys.exit(run(cfg))


if __name__ == "__main__":
    main()
