"""`CleaningConfig`: what to do about each data problem (raise, warn, or a named repair), validated on construction.

The policy of `envs.data.cleaning.clean`; `envs.data.quality.validate` reads it to mark which problems are
errors. Its keys are the problem kinds of the quality report, in report order.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.typed_config import from_mapping as typed_from_mapping

ALLOWED_POLICIES: dict[str, tuple[str, ...]] = {
    "out_of_order": ("raise", "sort", "drop"),
    "duplicates": ("raise", "keep_first", "keep_last"),
    "non_finite": ("raise", "drop"),
    "non_positive": ("raise", "drop"),
    "negative_volume": ("raise", "drop"),
    "ohlc_inconsistent": ("raise", "drop"),
    "misaligned": ("raise", "drop"),
    "gaps": ("warn", "raise", "forward_fill"),
    "zero_volume_runs": ("warn", "raise", "drop"),
    "return_outliers": ("warn", "raise", "drop"),
}


@dataclass(frozen=True, slots=True)
class CleaningConfig:
    """Policy per data problem (see the module table) plus the thresholds of the soft checks.

    Attributes:
        out_of_order: ``raise`` | ``sort`` | ``drop`` (drop rows earlier than a previous row).
        duplicates: ``raise`` | ``keep_first`` | ``keep_last`` (rows with equal timestamps).
        non_finite: ``raise`` | ``drop`` (NaN/inf in OHLCV).
        non_positive: ``raise`` | ``drop`` (a price <= 0).
        negative_volume: ``raise`` | ``drop`` (volume < 0).
        ohlc_inconsistent: ``raise`` | ``drop`` (high/low not enclosing open/close).
        misaligned: ``raise`` | ``drop`` (timestamp off the bar grid).
        gaps: ``warn`` | ``raise`` | ``forward_fill`` (missing grid bars).
        zero_volume_runs: ``warn`` | ``raise`` | ``drop`` (runs of >= ``zero_volume_min_run``).
        return_outliers: ``warn`` | ``raise`` | ``drop`` (|robust z| > ``outlier_z``).
        zero_volume_min_run: shortest zero-volume run counted, bars, >= 1.
        outlier_z: robust z-score threshold of log returns, > 0 (10 = ten robust sigmas).
        max_fill_bars: longest single gap ``forward_fill`` fills, bars, >= 1; a longer gap is
            refused up front (before any memory is allocated) with the gap named: such a span is
            missing data, not a bar to invent.
    """

    out_of_order: str = "raise"
    duplicates: str = "raise"
    non_finite: str = "raise"
    non_positive: str = "raise"
    negative_volume: str = "raise"
    ohlc_inconsistent: str = "raise"
    misaligned: str = "raise"
    gaps: str = "warn"
    zero_volume_runs: str = "warn"
    return_outliers: str = "warn"
    zero_volume_min_run: int = 3
    outlier_z: float = 10.0
    max_fill_bars: int = 10_000

    def __post_init__(self) -> None:
        for kind, allowed in ALLOWED_POLICIES.items():
            value = getattr(self, kind)
            if value not in allowed:
                raise ValueError(
                    f"cleaning.{kind}={value!r} is invalid: must be one of {list(allowed)} "
                    "(set it in conf/validate.yaml or CleaningConfig)"
                )
        if int(self.zero_volume_min_run) < 1:
            raise ValueError(
                f"cleaning.zero_volume_min_run={self.zero_volume_min_run} is invalid: must be >= 1 bar"
            )
        if int(self.max_fill_bars) < 1:
            raise ValueError(f"cleaning.max_fill_bars={self.max_fill_bars} is invalid: must be >= 1 bar")
        if not float(self.outlier_z) > 0:
            raise ValueError(f"cleaning.outlier_z={self.outlier_z} is invalid: must be > 0 (robust sigmas)")

    def error_kinds(self) -> frozenset[str]:
        """Problem kinds whose policy is ``raise``."""
        return frozenset(k for k in ALLOWED_POLICIES if getattr(self, k) == "raise")

    @classmethod
    def from_mapping(cls, mapping: dict[str, object]) -> CleaningConfig:
        """Build from a plain mapping (e.g. a Hydra node); unknown keys raise ``ValueError``."""
        return typed_from_mapping(cls, mapping, "cleaning")
