"""`EnvConfig`: every setting of the trading environment, validated on construction.

Field names and defaults are part of quantgym's public API (Hydra's ``env`` group mirrors them).
Units: fractions are plain ratios (0.0005 = 0.05 %), ``*_bps`` are basis points (1 bp = 0.01 %),
prices are quote currency per base unit, quantities base units (contracts for futures).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields

import pandas as pd

from envs.market.bars import MAX_ABS_FUNDING_RATE
from envs.market.times import parse_timeframe, to_ms
from envs.sim.execution import SLIPPAGE_CODES
from envs.sim.rewards import REWARD_CODES

ACTION_MODES = ("continuous", "discrete")
#: sizing mode -> the kernel's code (`envs.sim.kernel.target_exposure` branches on it)
SIZING_FIXED, SIZING_VOL_TARGET, SIZING_RISK, SIZING_KELLY = 0, 1, 2, 3
SIZING_CODES = {"fixed": SIZING_FIXED, "vol_target": SIZING_VOL_TARGET, "risk_per_trade": SIZING_RISK,
                "kelly": SIZING_KELLY}
# The allowed names come from the code tables: a new model/reward/mode is one table entry, never repeated here.
SIZING_MODES = tuple(SIZING_CODES)
SLIPPAGE_MODELS = tuple(SLIPPAGE_CODES)
REWARDS = tuple(REWARD_CODES)
#: observation kinds (`envs.sim.observation`): every feature of the last ``window_size`` bars, or the
#: last ``compact_bars`` bars plus per-feature means over ``summary_windows``
OBSERVATIONS = ("window", "compact")
#: Upper bounds of the cost settings (values beyond them are unit errors, e.g. percent for bps).
MAX_SLIPPAGE_BPS = 1000.0
MAX_SLIPPAGE_COEF = 10.0
MAX_FEE_FRAC = 0.1
#: Hours between funding times: 1 h (the shortest used by exchanges) to one week.
FUNDING_INTERVAL_H_RANGE = (1.0, 168.0)


def _fail(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"env.{name}={value!r} is invalid: {allowed} (set it in EnvConfig or conf/env/*.yaml)")


def _fail_risk(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"env.risk.{name}={value!r} is invalid: {allowed} (set it in RiskConfig, conf/risk/*.yaml "
                     f"or with env.risk.{name}=...)")


@dataclass(frozen=True, slots=True)
class RiskConfig:
    """Risk controls applied by the kernel at every decision (README, "Risk controls"); None = off.

    Every limit is off by default, so a config without ``risk`` trades exactly as before. A
    decision at bar t's close is limited with what is known at that close; its order still fills
    at bar t+1's open. Times are bar open times (the data's ``timestamp``), UTC.

    Attributes:
        max_exposure: cap on |target exposure| (position value / equity), > 0.
        max_order_notional: cap on one order's notional in quote currency at close t, > 0 (orders
            sent by the agent or a risk rule; stop, take-profit and liquidation exits are not capped).
        daily_loss_limit: fraction in (0, 1] of the UTC day's starting equity (the equity at the
            close before the day's first bar; the initial cash on an episode's first day); once equity
            has lost that much, orders may only reduce the position until the first decision at a bar
            of the next UTC day.
        max_drawdown: fraction in (0, 1] of drawdown from the equity peak (at closes) at which the
            position is flattened at the next open and trading halts for the rest of the episode
            (unlike ``env.max_drawdown``, which ends the episode).
        stale_after: feed lag in bars, >= 1, beyond which no order is sent (the open position is
            kept; stops, take-profit and liquidation still apply). The lag is set by the caller
            (paper mode's feed); it is 0 in backtests, so this never triggers there.
        expires_at: ISO date or time (UTC) from which the model counts as expired: decisions at bars
            opening at or after it may only reduce the position. E.g. the training end plus the
            horizon you trust the model (and its forecasters) for.
        max_model_age: the age, from the end of the run's training data, from which the model counts
            as expired: a duration ``"<n><unit>"`` with unit m/h/d/w (``"30d"``, ``"12h"``, ``"2w"``;
            `envs.market.times.parse_timeframe`); decisions at bars opening at or after ``trained_until +
            max_model_age`` may only reduce the position (reason ``model_age``). Evaluation of a
            finished run and paper mode set ``trained_until`` from the run folder
            (`agents.model_age`); while it is None (training) the age limit is inactive.
        trained_until: ISO time (UTC) at which the model's training data ends (the close of the
            training split's last bar), set from the run by `agents.model_age.resolve_model_age`.
    """

    max_exposure: float | None = None
    max_order_notional: float | None = None
    daily_loss_limit: float | None = None
    max_drawdown: float | None = None
    stale_after: int | None = None
    expires_at: str | None = None
    max_model_age: str | None = None
    trained_until: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_exposure", "max_order_notional"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                _fail_risk(name, value, "must be None (off) or a finite number > 0")
        for name in ("daily_loss_limit", "max_drawdown"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0 < value <= 1):
                _fail_risk(name, value, "must be None (off) or a fraction in (0, 1] (0.05 = 5 %)")
        if self.stale_after is not None and (
                not isinstance(self.stale_after, int) or isinstance(self.stale_after, bool) or self.stale_after < 1):
            _fail_risk("stale_after", self.stale_after, "must be None (off) or an integer >= 1 (bars)")
        if self.expires_at is not None:
            self.expires_ms  # noqa: B018 - parses and checks the date
        if self.max_model_age is not None:
            self.max_age_ms  # noqa: B018 - parses and checks the duration
        if self.trained_until is not None:
            self.trained_until_ms  # noqa: B018

    @property
    def max_age_ms(self) -> int | None:
        """``max_model_age`` in ms, or None."""
        age = self.max_model_age
        if age is None:
            return None
        ms = None
        if isinstance(age, str) and not age.strip().isdigit() and not age.strip().endswith("s"):
            try:
                ms = parse_timeframe(age)
            except ValueError:
                pass
        if ms is None:
            raise ValueError(f"env.risk.max_model_age={age!r} is invalid: must be None (off) or a duration with a "
                             "unit, e.g. '30d', '12h', '2w' (unit m/h/d/w; a bare number is ambiguous), measured "
                             "from the end of the run's training data (set it in conf/risk/*.yaml or with "
                             "env.risk.max_model_age=...)")
        return ms

    @property
    def trained_until_ms(self) -> int | None:
        """``trained_until`` as int64 ms UTC, or None."""
        if self.trained_until is None:
            return None
        try:
            return to_ms(self.trained_until, "env.risk.trained_until")
        except ValueError as err:
            raise ValueError(f"{err} (set it in RiskConfig or leave it to the run folder)") from err

    @property
    def model_expires_ms(self) -> int | None:
        """``trained_until + max_model_age`` in ms UTC; None when either is None (the age limit is off)."""
        until, age = self.trained_until_ms, self.max_age_ms
        return None if until is None or age is None else until + age

    def meta_json(self) -> str:
        """The limits as sorted JSON for a paper ledger's ``meta`` (keys added after the first ledgers,
        ``max_model_age`` and ``trained_until``, appear only when set, so older folders still resume)."""
        values = dataclasses.asdict(self)
        for key in ("max_model_age", "trained_until"):
            if values[key] is None:
                del values[key]
        return json.dumps(values, sort_keys=True)

    @property
    def expires_ms(self) -> int | None:
        """``expires_at`` as int64 ms UTC (a date without a zone is UTC), or None."""
        if self.expires_at is None:
            return None
        try:
            ts = pd.Timestamp(self.expires_at)
        except (ValueError, TypeError) as err:
            raise ValueError(f"env.risk.expires_at={self.expires_at!r} is invalid: must be an ISO date or time, "
                             f"e.g. 2025-01-01 or 2025-01-01T12:00 (UTC) ({err})") from err
        if ts is pd.NaT:
            _fail_risk("expires_at", self.expires_at, "must be an ISO date or time, e.g. 2025-01-01")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.value // 1_000_000)

    @classmethod
    def from_dict(cls, values: dict[str, object] | None) -> RiskConfig:
        """Build from a plain mapping (a resolved Hydra node), rejecting unknown keys by name."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown env.risk key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**values)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class EnvConfig:
    """Configuration of `TradingEnv` / `VecTradingEnv`.

    Attributes:
        window_size: bars of history each observation reads, >= 1: the observation window
            (``observation="window"``) or the longest look-back of the compact observation. The
            first decision is at bar ``window_size - 1``.
        initial_cash: starting cash in quote currency, > 0.
        episode_length: None = one sequential pass from bar ``window_size - 1`` to the end
            (evaluation); an int L >= 1 = random start in [W-1, n-1-L] drawn by the env's
            ``np_random``, truncated after L steps.
        max_drawdown: fraction in (0, 1]; equity drawdown from its peak (at closes) beyond which
            the episode terminates. None = no limit.
        action_mode: "continuous" (Box(-1, 1, (1,))) or "discrete" (Discrete(len(exposure_levels))).
        exposure_levels: discrete target exposures (position value / equity), each within
            [-max_leverage, max_leverage].
        max_leverage: cap on |target exposure|, > 0.
        long_only: clip target exposure to >= 0.
        sizing: "fixed", "vol_target", "risk_per_trade" or "kelly" (see README, rule 2).
        target_vol: annualised volatility target for "vol_target", fraction > 0 (0.5 = 50 %).
        vol_lookback: bars of 1-bar log returns for the volatility/mean estimates, >= 2.
        risk_per_trade: fraction of equity lost if the stop is hit, in (0, 1]; needs ``stop_loss``.
        kelly_fraction: multiplier of the Kelly exposure mu/sigma^2, > 0.
        lot_size: quantity step in base units; 0 = continuous quantities.
        min_notional: smallest order notional in quote currency (measured at close t), >= 0.
        rebalance_threshold: minimum |change of target exposure| that sends an order, >= 0.
        taker_fee: fraction of fill notional charged on every market fill, in [0, 0.1).
        slippage_model: "none", "fixed_bps", "spread", "volatility" or "sqrt_impact".
        slippage_bps: slippage in basis points for "fixed_bps" (and "spread" without a spread
            column), in [0, 1000].
        slippage_coef: coefficient for "volatility" and "sqrt_impact", in [0, 10]. Whatever the
            model, slippage is capped at ``execution.MAX_SLIPPAGE_FRAC`` (50 %) of the reference
            price, so a fill price is always > 0.
        max_participation: cap on |order quantity| as a fraction of the fill bar's volume, in
            (0, 1]; None = no cap.
        contract_multiplier: quote currency per price point per contract (ES = 50), > 0.
        tick_size: price grid in quote currency; 0 = no rounding.
        funding_rate: constant funding rate per funding interval (fraction, |rate| < 0.1), used
            when the data has no ``funding_rate`` column. Longs pay a positive rate.
        funding_interval_h: hours between funding times (UTC multiples since the epoch), in
            [1, 168].
        maintenance_margin_rate: fraction of position notional that equity must cover, in [0, 1).
        liquidation_fee: fraction of notional at the liquidation price charged on liquidation,
            in [0, 0.1).
        stop_loss: fraction below (long) / above (short) the entry price, in (0, 1); None = off.
        take_profit: fraction above (long) / below (short) the entry price, > 0; None = off.
        trailing_stop: fraction from the best price since entry, in (0, 1); None = off.
        reward: "log_return", "differential_sharpe" or "sortino".
        reward_eta: adaptation rate of the differential Sharpe / Sortino moving moments, in (0, 1).
        turnover_penalty: reward penalty per unit of turnover (traded notional / equity), >= 0.
        drawdown_penalty: reward penalty per unit of current drawdown (fraction), >= 0.
        obs_clip: bound on every observation value, > 0.
        observation: "window" (every feature of the last ``window_size`` bars, then the account
            values: ``window_size x F + 4`` floats) or "compact" (every feature of the last
            ``compact_bars`` bars, then per feature its mean over the last ``s`` bars for each ``s`` in
            ``summary_windows``, then the account values: ``(compact_bars + len(summary_windows)) x F + 4``
            floats). See `envs.sim.observation`.
        compact_bars: bars of the compact observation's short window, in [1, window_size].
        summary_windows: look-backs (bars) of the compact observation's means, each in [2, window_size],
            increasing; may be empty. None (the default) = ``compact_bars`` and ``window_size`` (those >= 2):
            the means over the short window and over the whole history (`summaries`).
        risk: risk controls (`RiskConfig`); every limit off by default.
    """

    window_size: int = 32
    initial_cash: float = 10000.0
    episode_length: int | None = None
    max_drawdown: float | None = None
    action_mode: str = "continuous"
    exposure_levels: tuple[float, ...] = (-1.0, 0.0, 1.0)
    max_leverage: float = 1.0
    long_only: bool = False
    sizing: str = "fixed"
    target_vol: float = 0.5
    vol_lookback: int = 60
    risk_per_trade: float = 0.01
    kelly_fraction: float = 0.5
    lot_size: float = 0.0
    min_notional: float = 0.0
    rebalance_threshold: float = 0.0
    taker_fee: float = 0.0005
    slippage_model: str = "fixed_bps"
    slippage_bps: float = 1.0
    slippage_coef: float = 0.1
    max_participation: float | None = None
    contract_multiplier: float = 1.0
    tick_size: float = 0.0
    funding_rate: float = 0.0
    funding_interval_h: float = 8.0
    maintenance_margin_rate: float = 0.005
    liquidation_fee: float = 0.005
    stop_loss: float | None = None
    take_profit: float | None = None
    trailing_stop: float | None = None
    reward: str = "log_return"
    reward_eta: float = 0.01
    turnover_penalty: float = 0.0
    drawdown_penalty: float = 0.0
    obs_clip: float = 10.0
    observation: str = "window"
    compact_bars: int = 8
    summary_windows: tuple[int, ...] | None = None
    risk: RiskConfig = field(default_factory=RiskConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "exposure_levels", tuple(float(x) for x in self.exposure_levels))
        if self.summary_windows is not None:
            object.__setattr__(self, "summary_windows", tuple(self.summary_windows))
        if isinstance(self.risk, dict):
            object.__setattr__(self, "risk", RiskConfig.from_dict(self.risk))
        if not isinstance(self.risk, RiskConfig):
            _fail("risk", self.risk, "must be an envs.sim.config.RiskConfig (or a mapping of its keys)")
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                _fail(name, value, "must be a finite number")
        self._check_ranges()

    def _check_ranges(self) -> None:
        self._check_episode()
        self._check_sizing()
        self._check_costs()
        self._check_exits_and_reward()
        self._check_observation()

    def _check_episode(self) -> None:
        """Account, episode and action settings."""
        if not isinstance(self.window_size, int) or self.window_size < 1:
            _fail("window_size", self.window_size, "must be an integer >= 1 (bars)")
        if self.initial_cash <= 0:
            _fail("initial_cash", self.initial_cash, "must be > 0 (quote currency)")
        if self.episode_length is not None and (
            not isinstance(self.episode_length, int) or self.episode_length < 1
        ):
            _fail("episode_length", self.episode_length, "must be None or an integer >= 1 (steps)")
        if self.max_drawdown is not None and not 0 < self.max_drawdown <= 1:
            _fail("max_drawdown", self.max_drawdown, "must be None or a fraction in (0, 1]")
        if self.action_mode not in ACTION_MODES:
            _fail("action_mode", self.action_mode, f"must be one of {ACTION_MODES}")
        if self.max_leverage <= 0:
            _fail("max_leverage", self.max_leverage, "must be > 0 (1.0 = no leverage)")

    def _check_sizing(self) -> None:
        """Exposure levels, sizing and order rounding."""
        if len(self.exposure_levels) < 2:
            _fail("exposure_levels", self.exposure_levels, "needs at least 2 levels")
        if any(abs(x) > self.max_leverage + 1e-12 for x in self.exposure_levels):
            _fail("exposure_levels", self.exposure_levels, f"each level must lie in ±max_leverage={self.max_leverage}")
        if self.sizing not in SIZING_MODES:
            _fail("sizing", self.sizing, f"must be one of {SIZING_MODES}")
        if self.target_vol <= 0:
            _fail("target_vol", self.target_vol, "must be > 0 (annualised fraction, 0.5 = 50 %)")
        if not isinstance(self.vol_lookback, int) or self.vol_lookback < 2:
            _fail("vol_lookback", self.vol_lookback, "must be an integer >= 2 (bars)")
        if not 0 < self.risk_per_trade <= 1:
            _fail("risk_per_trade", self.risk_per_trade, "must be a fraction in (0, 1]")
        if self.sizing == "risk_per_trade" and self.stop_loss is None:
            _fail("stop_loss", None, "sizing='risk_per_trade' requires stop_loss (a fraction in (0, 1))")
        if self.kelly_fraction <= 0:
            _fail("kelly_fraction", self.kelly_fraction, "must be > 0")
        for name in ("lot_size", "min_notional", "rebalance_threshold", "tick_size", "turnover_penalty",
                     "drawdown_penalty"):
            if getattr(self, name) < 0:
                _fail(name, getattr(self, name), "must be >= 0")

    def _check_costs(self) -> None:
        """Slippage, fees, participation, contracts, funding and margin."""
        if not 0 <= self.slippage_bps <= MAX_SLIPPAGE_BPS:
            _fail("slippage_bps", self.slippage_bps, f"must be in [0, {MAX_SLIPPAGE_BPS:g}] basis points (10 = 0.10 %)")
        if not 0 <= self.slippage_coef <= MAX_SLIPPAGE_COEF:
            _fail("slippage_coef", self.slippage_coef, f"must be in [0, {MAX_SLIPPAGE_COEF:g}] (multiplies per-bar sigma)")
        for name in ("taker_fee", "liquidation_fee"):
            if not 0 <= getattr(self, name) < MAX_FEE_FRAC:
                _fail(name, getattr(self, name), f"must be a fraction in [0, {MAX_FEE_FRAC:g}) (0.0005 = 5 bps)")
        if self.slippage_model not in SLIPPAGE_MODELS:
            _fail("slippage_model", self.slippage_model, f"must be one of {SLIPPAGE_MODELS}")
        if self.max_participation is not None and not 0 < self.max_participation <= 1:
            _fail("max_participation", self.max_participation, "must be None or a fraction in (0, 1]")
        if self.contract_multiplier <= 0:
            _fail("contract_multiplier", self.contract_multiplier, "must be > 0")
        if abs(self.funding_rate) >= MAX_ABS_FUNDING_RATE:
            _fail("funding_rate", self.funding_rate, f"must be a fraction per interval with |rate| < {MAX_ABS_FUNDING_RATE:g}")
        lo, hi = FUNDING_INTERVAL_H_RANGE
        if not lo <= self.funding_interval_h <= hi:
            _fail("funding_interval_h", self.funding_interval_h, f"must be in [{lo:g}, {hi:g}] hours (8 = Binance perpetuals)")
        if not 0 <= self.maintenance_margin_rate < 1:
            _fail("maintenance_margin_rate", self.maintenance_margin_rate, "must be a fraction in [0, 1)")

    def _check_exits_and_reward(self) -> None:
        """Stops, take-profit, reward and observation clipping."""
        for name in ("stop_loss", "trailing_stop"):
            value = getattr(self, name)
            if value is not None and not 0 < value < 1:
                _fail(name, value, "must be None or a fraction in (0, 1)")
        if self.take_profit is not None and self.take_profit <= 0:
            _fail("take_profit", self.take_profit, "must be None or a fraction > 0")
        if self.reward not in REWARDS:
            _fail("reward", self.reward, f"must be one of {REWARDS}")
        if not 0 < self.reward_eta < 1:
            _fail("reward_eta", self.reward_eta, "must be in (0, 1)")
        if self.obs_clip <= 0:
            _fail("obs_clip", self.obs_clip, "must be > 0")


    def _check_observation(self) -> None:
        if self.observation not in OBSERVATIONS:
            _fail("observation", self.observation, f"must be one of {OBSERVATIONS}")
        if self.observation != "compact":
            return
        w = self.window_size
        if not isinstance(self.compact_bars, int) or not 1 <= self.compact_bars <= w:
            _fail("compact_bars", self.compact_bars, f"must be an integer in [1, window_size={w}] (bars)")
        sw = self.summaries
        if any(not isinstance(s, int) or isinstance(s, bool) or not 2 <= s <= w for s in sw) or list(sw) != sorted(set(sw)):
            _fail("summary_windows", list(sw), f"must be increasing integers in [2, window_size={w}] (bars; "
                  "window_size is the history an observation reads: raise it to the longest look-back)")

    @property
    def summaries(self) -> tuple[int, ...]:
        """Look-backs (bars) of the compact observation's means: ``summary_windows``, or by default
        ``compact_bars`` and ``window_size`` (those >= 2, without repeats)."""
        if self.summary_windows is not None:
            return self.summary_windows
        return tuple(s for s in sorted({self.compact_bars, self.window_size}) if s >= 2)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> EnvConfig:
        """Build from a plain mapping (e.g. a resolved Hydra node), rejecting unknown keys by name."""
        known = set(field_names())
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown env key(s) {unknown}; known keys: {sorted(known)}")
        kwargs = dict(values)
        if "exposure_levels" in kwargs:
            kwargs["exposure_levels"] = tuple(kwargs["exposure_levels"])  # type: ignore[arg-type]
        if kwargs.get("summary_windows") is not None:
            kwargs["summary_windows"] = tuple(kwargs["summary_windows"])  # type: ignore[arg-type]
        if not isinstance(kwargs.get("risk"), RiskConfig):
            kwargs["risk"] = RiskConfig.from_dict(kwargs.get("risk"))  # type: ignore[arg-type]
        return cls(**kwargs)  # type: ignore[arg-type]


def field_names() -> list[str]:
    """Public field names of `EnvConfig`."""
    return [f.name for f in fields(EnvConfig)]
