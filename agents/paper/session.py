"""A paper session from config: load the run, open (or resume) the ledger, replay the feed through the engine.

Resume: the ledger's latest bar (decided or settled) is where the session stands. The bars before it
seed the tail (as the history did the first time), and the feed restarts AT that bar: the engine
skips what the ledger already holds for it (settlement, decision) and resends its order, which the
broker ignores if it already has it. No bar is decided twice, none is skipped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from agents.data import load_frame
from agents.evaluate_run import load_run
from agents.forecasts import STATE_DIR
from agents.model_age import resolve_model_age
from agents.paper.broker import PaperBroker
from agents.paper.config import PaperConfig, PaperFeedConfig
from agents.paper.engine import PaperEngine, PaperRun
from agents.paper.feeds import FeedLag, LiveBars, live_source
from agents.paper.forecasts import PaperForecasts
from agents.paper.funding import SessionFunding, exchange_funding, file_funding
from agents.paper.killswitch import StopSignals, stop_signals
from agents.paper.ledger import Ledger
from agents.paper.market import BarTail
from agents.paper.monitor import SessionMonitor
from agents.sb3 import load_model
from envs.data.retry import RetryPolicy
from envs.feeds.base import Bar, frame_to_bars, timeframe_ms
from envs.feeds.clock import Clock, SimulatedClock
from envs.feeds.historical import HistoricalFeed
from envs.forecasting.state import read_state
from envs.market.bars import OHLCV_COLUMNS
from envs.sim.config import RiskConfig

logger = logging.getLogger(__name__)


def load_paper_run(run_dir: str | Path, model: str = "best", base_dir: str | None = None) -> PaperRun:
    """The run's config, normaliser and ``<model>_model.zip`` with its content id."""
    run = Path(run_dir)
    cfg, normalizer = load_run(run, base_dir)
    if cfg.forecaster.enabled:
        read_state(run / STATE_DIR)  # the forecaster state the session continues (clear error when missing)
    path = run / f"{model}_model.zip"
    if not path.exists():
        raise ValueError(f"{path} not found: model must be 'best' or 'final' of a finished training run")
    digest = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
    run_id = hashlib.blake2b(str(run.resolve()).encode(), digest_size=6).hexdigest()
    return PaperRun(cfg=cfg, normalizer=normalizer, model=load_model(cfg.agent.name, path, device=cfg.train.device),
                    model_id=f"{cfg.agent.name}:{path.name}:{digest}", run_id=run_id)


def replay_bars(run: PaperRun, feed: PaperFeedConfig) -> pd.DataFrame:
    """The replay's bars (a file or a store span) through the run's loader and data checks.

    Raises:
        ValueError: when the file's bar interval differs from the run's ``data.timeframe``, or the
            file has columns paper mode cannot feed yet (``funding_rate`` or ``spread`` in the file itself,
            extra columns; funding events come from the run's ``data.funding_path``, `agents.paper.funding`).
    """
    data = run.cfg.data
    path = feed_source(feed, run)
    try:
        frame = load_frame(dataclasses.replace(data, path=feed.path or data.path, store_root=feed.store_root,
                                               start=feed.start, end=feed.end))
    except ValueError as err:
        raise ValueError(f"feed ({path}): {err}") from err
    extra = [c for c in frame.columns if c not in OHLCV_COLUMNS and not (c == "funding_rate" and data.funding_path)]
    if extra:
        raise ValueError(f"the feed ({path}) has columns {extra}; paper feeds deliver OHLCV bars only for now "
                         "(see docs/paper.md): drop them or evaluate the file with scripts/evaluate.py")
    want = timeframe_ms(data.timeframe)
    ts = frame["timestamp"].to_numpy(np.int64)
    got = int(np.median(np.diff(ts))) if len(ts) > 1 else want
    if got != want:
        raise ValueError(f"the feed ({path}) has {got / 60_000:g}-minute bars but the run was trained on "
                         f"data.timeframe={data.timeframe!r}: replay bars of the run's timeframe (resample them)")
    if len(frame) < run.cfg.env.window_size + 1:
        raise ValueError(f"the feed ({path}) has {len(frame)} bars: a replay needs window_size + 1 = "
                         f"{run.cfg.env.window_size + 1} (history for the first observation, then bars to trade)")
    return frame


def feed_source(feed: PaperFeedConfig, run: PaperRun) -> str:
    """The replayed bars in words: the file, or the store series and span (live: exchange, series, store)."""
    if feed.kind == "live":
        return live_source(feed, run.cfg.data.timeframe)
    if feed.path is not None:
        src = str(Path(feed.path).resolve())
    else:
        d = run.cfg.data
        src = f"store {Path(feed.store_root or '').resolve()} {d.exchange} {d.symbol} {d.timeframe}"
    return src + (f" [{feed.start}, {feed.end})" if feed.start or feed.end else "")


def session_meta(cfg: PaperConfig, run: PaperRun) -> dict[str, str]:
    """What a paper folder is bound to (checked on resume): a settlement redone on resume must apply
    the same rules, so the risk limits in force are part of it."""
    return {"run_dir": str(Path(cfg.run_dir).resolve()), "model_id": run.model_id, "run_id": run.run_id,
            "feed.kind": cfg.feed.kind, "feed.source": feed_source(cfg.feed, run),
            "tail_bars": str(cfg.tail_bars), "timeframe": run.cfg.data.timeframe,
            "env.risk": run.cfg.env.risk.meta_json(), "broker": cfg.broker.kind}


def with_risk(run: PaperRun, risk: RiskConfig | None, run_dir: str | Path) -> PaperRun:
    """``run`` with its ``env.risk`` replaced by ``risk`` (None: the run's own limits), the model age
    limit resolved against the run folder (`agents.model_age`)."""
    if risk is not None:
        run = dataclasses.replace(run, cfg=dataclasses.replace(run.cfg, env=dataclasses.replace(run.cfg.env, risk=risk)))
    return dataclasses.replace(run, cfg=resolve_model_age(run.cfg, run_dir))


def run_paper(cfg: PaperConfig, base_dir: str | None = None, broker_cls: type[PaperBroker] = PaperBroker,
              clock: Clock | None = None) -> dict[str, Any]:
    """Run (or resume) a paper session until the feed ends (replay) or ``feed.end`` (live); returns a summary.

    Args:
        cfg: the session config.
        base_dir: directory relative paths of the run's config resolve against.
        broker_cls: the execution client class (the kernel's paper broker; ``broker=testnet`` builds
            `agents.paper.brokers.testnet.TestnetBroker`).
        clock: live feeds only: the feed's clock (None = ``feed.clock``); tests share a simulated one
            with a local fake exchange.
    """
    run = with_risk(load_paper_run(cfg.run_dir, cfg.model, base_dir), cfg.risk, cfg.run_dir)
    logger.info("risk limits: %s", run.cfg.env.risk)
    if cfg.feed.kind == "live":
        return _run_live(cfg, run, broker_cls, clock)
    frame = replay_bars(run, cfg.feed)
    ledger = Ledger(cfg.dir)
    try:
        ledger.check_meta(session_meta(cfg, run))
        ts = frame["timestamp"].to_numpy(np.int64)
        start = _resume_index(ledger, ts)
        forecasts = paper_forecasts(run, cfg, int(ts[0]), frame.iloc[:start])
        funding = None if run.cfg.data.funding_path is None else file_funding(
            run.cfg.data.funding_path, timeframe_ms(run.cfg.data.timeframe), run.cfg.env.funding_interval_h)
        tail = BarTail(run.cfg.env, run.cfg.features, run.normalizer, cfg.tail_bars, forecasts, funding)
        seed_tail(tail, frame.iloc[:start], forecasts, cfg.tail_bars)
        with stop_signals() as signals:
            engine = PaperEngine(run, ledger, tail, broker_cls(ledger), signals)
            if start:
                logger.info("resuming %s at bar %d of %d (%s)", cfg.dir, start, len(ts), ledger.counts())
            clock = SimulatedClock(int(ts[start]))
            feed = HistoricalFeed(frame.iloc[start:].reset_index(drop=True), run.cfg.data.symbol,
                                  run.cfg.data.timeframe, clock)
            n = drive(engine, _replay_events(feed, clock, cfg.feed.speed), SessionMonitor(
                cfg, run.cfg.data.timeframe, ledger.counts()["steps"]), signals, start)
        counts = ledger.counts()
        if engine.stopped is None:
            logger.info("feed ended after %d bars; ledger: %s", n, counts)
        else:
            logger.info("session stopped (%s) after %d bars; ledger: %s", engine.stopped, n, counts)
        return {"bars": n, "resumed_at": start, "halted": engine.halted, "stopped": engine.stopped, **counts,
                "ledger": str(ledger.path)}
    finally:
        ledger.close()


def _run_live(cfg: PaperConfig, run: PaperRun, broker_cls: type[PaperBroker], clock: Clock | None) -> dict[str, Any]:
    """A live session: backfill, resume from the ledger, then every closed bar with its lag (`agents.paper.feeds`)."""
    if run.cfg.data.funding_path is not None and cfg.feed.market != "swap":
        raise ValueError(f"the run uses data.funding_path={run.cfg.data.funding_path!r} (a perpetual's funding events) "
                         f"but feed.market={cfg.feed.market!r}: paper-trade it on the perpetual's feed "
                         "(paper_feed=binance_usdm or binance_usdm_ws), whose funding-rate history the session joins")
    since_ms = forecast_start_ms(run, cfg.run_dir)
    source = LiveBars(cfg.feed, run.cfg.data.timeframe, cfg.tail_bars, run.cfg.env.window_size, cfg.dir, clock,
                      since_ms=since_ms)
    ledger = Ledger(cfg.dir)
    broker: PaperBroker | None = None
    try:
        ledger.check_meta(session_meta(cfg, run))
        resume = resume_point(ledger)
        history, first_index = source.open(resume)
        if since_ms is None:
            tail = BarTail(run.cfg.env, run.cfg.features, run.normalizer, cfg.tail_bars)
            tail.seed(frame_to_bars(history), first_index)
        else:  # every bar since the run's end: the forecaster catches up over them (no decision on them)
            forecasts = paper_forecasts(run, cfg, since_ms, history)
            tail = BarTail(run.cfg.env, run.cfg.features, run.normalizer, cfg.tail_bars, forecasts)
            seed_tail(tail, history, forecasts, cfg.tail_bars)
        if run.cfg.data.funding_path is not None:
            tail.funding = live_funding(cfg, run, source, int(tail.bars[0].timestamp) if tail.bars else source.first_ts)
        if cfg.broker.kind == "testnet":
            from agents.paper.brokers.testnet import TestnetBroker

            testnet = broker_cls if issubclass(broker_cls, TestnetBroker) else TestnetBroker
            broker = testnet.start(ledger, tail, cfg.feed, cfg.broker)
        else:
            broker = broker_cls(ledger)
        with stop_signals() as signals:
            engine = PaperEngine(run, ledger, tail, broker, signals)
            if resume is not None:
                logger.info("resuming %s at bar %s (%s)", cfg.dir, resume[0], ledger.counts())
            events = ((bar, lag.received_ms, lag) for bar, lag in source)
            n = drive(engine, events, SessionMonitor(cfg, run.cfg.data.timeframe, ledger.counts()["steps"]), signals,
                      None if resume is None else resume[1], stop_when_halted=True)
        counts = ledger.counts()
        logger.info("live feed stopped after %d bars (feed.end=%s); ledger: %s", n, cfg.feed.end, counts)
        return {"bars": n, "resumed_at": None if resume is None else resume[1], "halted": engine.halted,
                "stopped": engine.stopped, **counts,
                "ledger": str(ledger.path), "feed_stats": source.stats}
    finally:
        source.close()
        close = getattr(broker, "close", None)
        if close is not None:
            close()
        ledger.close()


def live_funding(cfg: PaperConfig, run: PaperRun, source: LiveBars, start_ms: int) -> SessionFunding:
    """The exchange's funding events from the tail's first bar ``start_ms`` on, kept in the feed's store."""
    f = cfg.feed
    return exchange_funding(source.exchange, source.store, f.symbol, source.clock, start_ms,
                            timeframe_ms(run.cfg.data.timeframe), run.cfg.env.funding_interval_h,
                            RetryPolicy(max_retries=f.max_retries), f.max_retries, f.reconnect_delay_s)


def _replay_events(feed: HistoricalFeed, clock: SimulatedClock,
                   speed: float | None) -> Iterator[tuple[Bar, int, FeedLag | None]]:
    """A replay's bars with the simulated clock at each (no lag), ``speed`` bars per second of wall time."""
    for i, bar in enumerate(feed):
        if i and speed is not None:
            time.sleep(1.0 / speed)
        yield bar, clock.now_ms(), None


def drive(engine: PaperEngine, events: Iterable[tuple[Bar, int, FeedLag | None]], monitor: SessionMonitor,
          signals: StopSignals, first: int | None, stop_when_halted: bool = False) -> int:
    """Feed ``events`` (bar, feed clock ms, lag) to the engine until they end, a kill, or SIGINT; bars processed.

    The one session loop of replays and live feeds: every status goes to ``monitor``; the stop report is
    written when the session stops (the feed ended, a kill, SIGINT or Ctrl-C), never after a crash.
    """
    n = 0
    stopped = False
    try:
        for bar, now_ms, lag in events if engine.stopped is None else ():
            monitor.on_status(engine.on_bar(bar, now_ms, lag))
            n += 1
            if engine.halted and engine.stopped is None and engine.kill_reason() is not None:
                engine.stopped = engine.kill_reason()  # the episode already ended: nothing to flatten
            if engine.stopped is not None or (stop_when_halted and engine.halted):
                break
            if signals.stop:
                engine.stopped = "SIGINT"
                logger.warning("stopped by SIGINT after bar %s: nothing flattened, the open position and the pending "
                               "order stay in the ledger; rerun the same command to resume",
                               "?" if first is None else first + n - 1)
                break
        stopped = True
    except KeyboardInterrupt:
        stopped = True
        raise
    finally:
        monitor.close(report=stopped)
    return n


def resume_point(ledger: Ledger) -> tuple[int, int] | None:
    """The ledger's latest bar, decided or settled: (open time ms UTC, absolute index); None when empty."""
    marks = [(x.bar_ts, x.bar_index) for x in (ledger.last_decision(), ledger.last_settled()) if x is not None]
    return max(marks) if marks else None


def forecast_start_ms(run: PaperRun, run_dir: str | Path) -> int | None:
    """Open time (ms UTC) of the bar after a forecaster run's last bar: a live session's bar 0 (None without one)."""
    if not run.cfg.forecaster.enabled:
        return None
    state = read_state(Path(run_dir) / STATE_DIR)
    return int(state["last_bar_ms"]) + timeframe_ms(run.cfg.data.timeframe)


def paper_forecasts(run: PaperRun, cfg: PaperConfig, first_ms: int, before: pd.DataFrame) -> PaperForecasts | None:
    """The run's forecaster continued at the session bar after ``before`` (None without a forecaster).

    Args:
        run: the run.
        cfg: the session config.
        first_ms: open time of the session's bar 0 (ms UTC; after the run's last bar).
        before: the session's bars before the first bar to feed (bar 0 first; may be empty).

    Like ``scripts/evaluate.py data_path=...``: the run's bars are reloaded through its loader (refused
    if they changed since training) and the feed must start after them.
    """
    rc = run.cfg
    if not rc.forecaster.enabled:
        return None
    forecasts = PaperForecasts(rc.forecaster, rc.features, Path(cfg.run_dir) / STATE_DIR, load_frame(rc.data),
                               first_ms, cfg.tail_bars)
    forecasts.catch_up(before, rc.env.window_size)
    return forecasts


def seed_tail(tail: BarTail, before: pd.DataFrame, forecasts: PaperForecasts | None, tail_bars: int) -> None:
    """Seed ``tail`` with the last ``tail_bars - 1`` session bars of ``before`` (bar 0 first).

    With a forecaster, while the session holds fewer bars, the run's own bars come before them: the
    features' history, as in evaluation (they never become kernel rows).
    """
    start = len(before)
    first = max(0, start - tail_bars + 1)
    seed = before.iloc[first:start][list(OHLCV_COLUMNS)]
    if forecasts is not None and first == 0:
        seed = pd.concat([forecasts.history.iloc[-(tail_bars - start):], seed], ignore_index=True)
    tail.seed(frame_to_bars(seed), first - (len(seed) - (start - first)))


def _resume_index(ledger: Ledger, ts: np.ndarray) -> int:
    """Index in ``ts`` of the ledger's latest bar (0 for a new session)."""
    last_dec = ledger.last_decision()
    last_set = ledger.last_settled()
    marks = [x.bar_ts for x in (last_dec, last_set) if x is not None]
    if not marks:
        return 0
    at = int(np.searchsorted(ts, max(marks)))
    if at >= len(ts) or ts[at] != max(marks):
        raise ValueError(f"the ledger's last bar {max(marks)} is not in the feed's bars: resume with the same feed")
    return at
