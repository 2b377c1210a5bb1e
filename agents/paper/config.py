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
from agents.paper.brokers.config import BrokerConfig
from envs.market.times import to_ms
from envs.sim.config import RiskConfig

#: feeds: ``replay`` (a file or store span on a simulated clock), ``live`` (an exchange, `agents.paper.feeds`)
FEED_KINDS = ("replay", "live")
#: how a live feed receives bars: REST polling or the exchange's websocket kline stream
LIVE_MODES = ("poll", "websocket")
#: clocks deciding when a live bar has closed: the exchange's time (wall clock + measured offset) or the wall clock
CLOCKS = ("exchange", "system")
#: default bars of history the features are recomputed on at each bar (see docs/paper.md, "Features")
DEFAULT_TAIL_BARS = 4096
#: default port of the local web dashboard (``paper.dashboard_port``; 0 = any free port)
DEFAULT_DASHBOARD_PORT = 8765


@dataclass(frozen=True, slots=True)
class PaperFeedConfig:
    """Where bars come from (``conf/paper_feed/*.yaml``).

    Attributes:
        kind: ``replay`` (bars of a Parquet file or a store span on a simulated clock) or ``live``
            (closed bars of an exchange, `agents.paper.feeds`).
        path: replay: the bars file (bar format: timestamp ms UTC, OHLCV).
        store_root: replay: instead of ``path``, a quantgym Parquet store; the run's ``data.exchange``,
            ``data.symbol`` and ``data.timeframe`` select the series. Live: the store the feed appends
            every bar to and takes its history from (None = ``<paper.dir>/store``).
        start: replay only: ISO date (UTC) of the first replayed bar; None = all. The first
            ``window_size - 1`` bars are the history before the first decision.
        end: ISO date/time (UTC), exclusive: a replay stops before it; a live session stops once every
            bar opening before it was decided. None = to the end of the file / forever.
        speed: replay only: pace in bars per second of wall time, > 0; None = as fast as possible.
        exchange: live: ccxt exchange id (``binance``).
        market: live: ``spot`` or ``swap`` (perpetuals; binance -> ``binanceusdm``).
        symbol: live: unified symbol, ``BTC/USDT`` or ``BTC/USDT:USDT``.
        timeframe: live: bar length; None = the run's ``data.timeframe``, any other value is refused.
        mode: live: ``poll`` (REST) or ``websocket`` (ccxt.pro kline stream, REST for what it misses).
        api_url: live: base URL replacing the exchange's REST hosts (a local or test server).
        ws_url: live websocket: base URL replacing the exchange's websocket hosts.
        clock: live: ``exchange`` (wall clock corrected by the exchange's time, measured at start) or
            ``system`` (the machine's clock) decides when a bar has closed and its lag.
        timeout_ms: live: HTTP timeout, ms (> 0).
        rate_limit_ms: live: minimum spacing between requests, ms (> 0); None = ccxt's value for the exchange.
        settle_ms: live: wait after a bar's close before asking for it, ms (>= 0).
        poll_interval_s: live: shortest wait between polls, seconds (> 0).
        reconnect_delay_s: live: wait after a failed poll, seconds (> 0).
        max_retries: live: retries of a transient error inside one poll (>= 0).
        ws_fallback_ms: live websocket: a bar the stream has not delivered this long after its close
            is fetched through REST, ms (>= 0).
    """

    kind: str = "replay"
    path: str | None = None
    store_root: str | None = None
    start: str | None = None
    end: str | None = None
    speed: float | None = None
    exchange: str = "binance"
    market: str = "spot"
    symbol: str = "BTC/USDT"
    timeframe: str | None = None
    mode: str = "poll"
    api_url: str | None = None
    ws_url: str | None = None
    clock: str = "exchange"
    timeout_ms: int = 10_000
    rate_limit_ms: int | None = None
    settle_ms: int = 1_000
    poll_interval_s: float = 1.0
    reconnect_delay_s: float = 5.0
    max_retries: int = 3
    ws_fallback_ms: int = 10_000

    def __post_init__(self) -> None:
        if self.kind not in FEED_KINDS:
            raise ValueError(f"feed.kind={self.kind!r} is invalid: choose one of {list(FEED_KINDS)} "
                             "(paper_feed=replay, or paper_feed=binance_spot / binance_usdm and their _ws forms)")
        if self.kind == "replay" and (self.path is None) == (self.store_root is None):
            raise ValueError("a replay needs one source: feed.path=<bars.parquet> (e.g. data/sample/btcusdt_1h.parquet) "
                             "or feed.store_root=<store> (not both)")
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"feed.speed={self.speed} is invalid: bars per second must be > 0, or null for as fast as possible")
        if self.kind == "live":
            self._check_live()

    def _check_live(self) -> None:
        for key in ("path", "start", "speed"):
            if getattr(self, key) is not None:
                raise ValueError(f"feed.{key} is for replays: a live feed decides from the latest closed bar on "
                                 f"(history is backfilled); remove feed.{key}")
        if self.end is not None:
            to_ms(self.end, "feed.end")  # a clear message at start-up, not after the backfill
        if self.mode not in LIVE_MODES:
            raise ValueError(f"feed.mode={self.mode!r} is invalid: choose one of {list(LIVE_MODES)}")
        if self.clock not in CLOCKS:
            raise ValueError(f"feed.clock={self.clock!r} is invalid: choose one of {list(CLOCKS)}")
        if self.market == "swap" and ":" not in self.symbol:
            raise ValueError(f"feed.symbol={self.symbol!r} is not a perpetual symbol; use e.g. BTC/USDT:USDT "
                             "with feed.market=swap")
        if self.rate_limit_ms is not None and self.rate_limit_ms <= 0:
            raise ValueError(f"feed.rate_limit_ms={self.rate_limit_ms} is invalid: must be > 0 (ms), or null for ccxt's")
        if self.timeout_ms <= 0 or self.settle_ms < 0 or self.ws_fallback_ms < 0 or self.max_retries < 0:
            raise ValueError("feed.timeout_ms must be > 0 and feed.settle_ms, feed.ws_fallback_ms, "
                             "feed.max_retries >= 0")
        if not (self.poll_interval_s > 0 and self.reconnect_delay_s > 0):
            raise ValueError("feed.poll_interval_s and feed.reconnect_delay_s must be > 0 (seconds)")


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
        broker: where orders go (``paper`` = the kernel only, ``testnet`` = plus an exchange sandbox).
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
    broker: BrokerConfig = field(default_factory=BrokerConfig)

    def __post_init__(self) -> None:
        if self.model not in ("best", "final"):
            raise ValueError(f"model={self.model!r} is invalid: choose 'best' or 'final'")
        if self.tail_bars < 2:
            raise ValueError(f"paper.tail_bars={self.tail_bars} is invalid: must be >= window_size + 1")
        if not 0 <= self.dashboard_port <= 65535:
            raise ValueError(f"paper.dashboard_port={self.dashboard_port} is invalid: a TCP port 1..65535, or 0 for any "
                             "free port")
        if self.broker.kind == "testnet" and self.feed.kind != "live":
            raise ValueError("broker=testnet needs a live feed (paper_feed=binance_spot, ...): its orders trade at the "
                             "exchange's current prices, which a replay is not")


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


#: Hydra schemas of the ``feed`` node (conf/paper_feed/*.yaml) and the ``broker`` node (conf/broker/*.yaml)
PaperFeedSchema = schema_of(PaperFeedConfig, "PaperFeedSchema")
BrokerSchema = schema_of(BrokerConfig, "BrokerSchema")


@dataclass
class PaperAppSchema:
    """Hydra schema of conf/paper.yaml (typos and wrong types fail at composition)."""

    run_dir: str = MISSING
    paper: PaperNodeSchema = field(default_factory=PaperNodeSchema)
    env: PaperEnvSchema = field(default_factory=PaperEnvSchema)
    feed: PaperFeedSchema = field(default_factory=lambda: PaperFeedSchema())  # type: ignore[valid-type]
    broker: BrokerSchema = field(default_factory=lambda: BrokerSchema())  # type: ignore[valid-type]


def register_paper_configs() -> None:
    """Register ``paper_schema`` in Hydra's ConfigStore and the ``if_null`` resolver (idempotent).

    ``${if_null:${paper.dir},<default>}`` is ``paper.dir`` unless it is null (``oc.select`` keeps nulls).
    """
    ConfigStore.instance().store(name="paper_schema", node=PaperAppSchema)
    if not OmegaConf.has_resolver("if_null"):
        OmegaConf.register_new_resolver("if_null", lambda value, default: default if value is None else value)


def to_paper_config(raw: dict[str, Any], base_dir: str | Path | None = None) -> PaperConfig:
    """Validated `PaperConfig` from a plain mapping (``run_dir``, ``dir``, ``model``, ``tail_bars``,
    ``feed``, ``broker``, ``risk``: the ``paper`` node's keys at the top level); relative paths resolve against ``base_dir``."""
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
        broker=BrokerConfig(**dict(raw.get("broker") or {})),
    )
