"""Typed configuration of a paper session (``conf/paper.yaml``), converted once from Hydra.

Below ``scripts/`` nothing takes a DictConfig: `to_paper_config` builds these frozen dataclasses
and their checks name the key to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional  # noqa: UP035 - OmegaConf schemas

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from agents.config import schema_of
from envs.config import RiskConfig

#: feeds this step supports (live REST / websocket feeds come later, see docs/paper.md)
FEED_KINDS = ("replay",)
#: default bars of history the features are recomputed on at each bar (see docs/paper.md, "Features")
DEFAULT_TAIL_BARS = 4096
#: default port of the local web dashboard (``paper.dashboard_port``; 0 = any free port)
DEFAULT_DASHBOARD_PORT = 8765


@dataclass(frozen=True, slots=True)
class PaperFeedConfig:
    """Where bars come from.

    Attributes:
        kind: ``replay`` (bars of a Parquet file or a store span on a simulated clock).
        path: the bars file of a replay (bar format: timestamp ms UTC, OHLCV).
        store_root: instead of ``path``, a quantgym Parquet store; the run's ``data.exchange``,
            ``data.symbol`` and ``data.timeframe`` select the series.
        start, end: ISO dates (UTC) bounding the replayed bars, end exclusive; None = all. The first
            ``window_size - 1`` bars are the history before the first decision.
        speed: replay pace in bars per second of wall time, > 0; None = as fast as possible.
    """

    kind: str = "replay"
    path: str | None = None
    store_root: str | None = None
    start: str | None = None
    end: str | None = None
    speed: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEED_KINDS:
            raise ValueError(f"feed.kind={self.kind!r} is invalid: this version supports {list(FEED_KINDS)} "
                             "(live feeds for paper mode are not there yet, see docs/paper.md)")
        if self.kind == "replay" and (self.path is None) == (self.store_root is None):
            raise ValueError("a replay needs one source: feed.path=<bars.parquet> (e.g. data/sample/btcusdt_1h.parquet) "
                             "or feed.store_root=<store> (not both)")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"feed.speed={self.speed} is invalid: bars per second must be > 0, or null for as fast as possible")


@dataclass(frozen=True, slots=True)
class PaperConfig:
    """One paper session.

    Attributes:
        run_dir: the training run folder (its config, normaliser and model are used).
        dir: the paper folder holding ``ledger.sqlite``; rerunning with the same folder resumes.
        model: ``best`` or ``final`` model of the run.
        tail_bars: bars of history (this bar included) the features are recomputed on per bar, >=
            window_size + 1; the cost per bar is O(tail_bars), not O(history).
        feed: the bar source.
        tensorboard: write ``paper/`` scalars into ``<dir>/tb``.
        dashboard: serve the local web dashboard (127.0.0.1 only) while the session runs.
        dashboard_port: its TCP port, 0..65535 (0 = any free port; the URL is logged).
        report_on_stop: write the evaluation report into ``<dir>/report`` when the session stops.
        risk: risk limits replacing the run's ``env.risk`` (``risk=<preset>``); None = the run's.
    """

    run_dir: str
    dir: str
    model: str = "best"
    tail_bars: int = DEFAULT_TAIL_BARS
    feed: PaperFeedConfig = field(default_factory=PaperFeedConfig)
    tensorboard: bool = True
    dashboard: bool = False
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    report_on_stop: bool = True
    risk: RiskConfig | None = None

    def __post_init__(self) -> None:
        if self.model not in ("best", "final"):
            raise ValueError(f"model={self.model!r} is invalid: choose 'best' or 'final'")
        if self.tail_bars < 2:
            raise ValueError(f"paper.tail_bars={self.tail_bars} is invalid: must be >= window_size + 1")
        if not 0 <= self.dashboard_port <= 65535:
            raise ValueError(f"paper.dashboard_port={self.dashboard_port} is invalid: a TCP port 1..65535, or 0 for any "
                             "free port")


#: monitoring keys of the ``paper`` node (`agents.paper.monitor`)
MONITOR_KEYS = ("tensorboard", "dashboard", "dashboard_port", "report_on_stop")


@dataclass
class PaperNodeSchema:
    """Hydra schema of the ``paper`` node of conf/paper.yaml (``dir`` null = Hydra's run folder)."""

    dir: Optional[str] = None  # noqa: UP045 - OmegaConf schemas
    model: str = "best"
    tail_bars: int = DEFAULT_TAIL_BARS
    tensorboard: bool = True
    dashboard: bool = False
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    report_on_stop: bool = True


RiskSchema = schema_of(RiskConfig, "RiskSchema")


@dataclass
class PaperEnvSchema:
    """The ``env`` node of conf/paper.yaml: only ``risk`` (null = the run's ``env.risk``)."""

    risk: Optional[RiskSchema] = None  # type: ignore[valid-type]  # noqa: UP045 - OmegaConf schemas


@dataclass
class PaperAppSchema:
    """Hydra schema of conf/paper.yaml (typos and wrong types fail at composition)."""

    run_dir: str = MISSING
    paper: PaperNodeSchema = field(default_factory=PaperNodeSchema)
    env: PaperEnvSchema = field(default_factory=PaperEnvSchema)
    feed: Any = field(default_factory=schema_of(PaperFeedConfig, "PaperFeedSchema"))


def register_paper_configs() -> None:
    """Register ``paper_schema`` in Hydra's ConfigStore and the ``if_null`` resolver (idempotent).

    ``${if_null:${paper.dir},<default>}`` is ``paper.dir`` unless it is null (``oc.select`` keeps nulls).
    """
    ConfigStore.instance().store(name="paper_schema", node=PaperAppSchema)
    if not OmegaConf.has_resolver("if_null"):
        OmegaConf.register_new_resolver("if_null", lambda value, default: default if value is None else value)


def to_paper_config(raw: dict[str, Any], base_dir: str | Path | None = None) -> PaperConfig:
    """Validated `PaperConfig` from a plain mapping (``run_dir``, ``dir``, ``model``, ``tail_bars``,
    ``feed``, ``risk``: the ``paper`` node's keys at the top level); relative paths resolve against ``base_dir``."""
    def absolute(p: str | None) -> str | None:
        if p is None or base_dir is None or Path(p).is_absolute():
            return p
        return str(Path(base_dir) / p)

    feed = dict(raw.get("feed") or {})
    feed["path"] = absolute(feed.get("path"))
    feed["store_root"] = absolute(feed.get("store_root"))
    return PaperConfig(
        run_dir=absolute(raw["run_dir"]) or "", dir=absolute(raw["dir"]) or "", model=raw.get("model", "best"),
        tail_bars=int(raw.get("tail_bars", DEFAULT_TAIL_BARS)), feed=PaperFeedConfig(**feed),
        **{k: raw[k] for k in MONITOR_KEYS if k in raw},
        risk=RiskConfig.from_dict(raw["risk"]) if raw.get("risk") is not None else None,
    )
