"""Download bars (and funding rates) into the Parquet store; rerun the same command to resume.

Example:
    python scripts/download.py feed.symbol=BTC/USDT feed.timeframe=1m feed.start=2024-01-01 feed.end=2024-03-01
    python scripts/download.py feed=binance_usdm feed.funding=true store.root=data/store
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore
from hydra.utils import to_absolute_path
from omegaconf import DictConfig, OmegaConf

from agents.cli import hydra_entry
from agents.config import writable_structured
from envs.data.download import DownloadError, FeedConfig, run_download
from envs.data.retry import FatalFetchError, RetryError
from envs.data.store import ParquetStore, StoreConfig


@dataclass(frozen=True, slots=True)
class DownloadAppConfig:
    """Schema of ``conf/download.yaml``."""

    feed: FeedConfig = field(default_factory=FeedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    log_level: str = "INFO"


ConfigStore.instance().store(name="download_schema", node=writable_structured(DownloadAppConfig))


@hydra_entry("download")
def main(cfg: DictConfig) -> None:
    """Convert the config to typed objects, run the download, print the summaries."""
    try:
        app: DownloadAppConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except Exception as e:  # validation errors from __post_init__ name the key
        print(f"config error: {e}", file=sys.stderr)
        sys.exit(2)
    logging.getLogger().setLevel(app.log_level)
    store = ParquetStore(to_absolute_path(app.store.root))
    try:
        summaries = run_download(app.feed, store)
    except (DownloadError, FatalFetchError, RetryError, ValueError) as e:
        print(f"download failed: {e}", file=sys.stderr)
        sys.exit(1)
    for s in summaries:
        print(s.describe())
    print(f"store: {store.root}")


if __name__ == "__main__":
    main()
