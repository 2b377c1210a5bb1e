"""Cut the small real-data sample shipped in data/sample/ from ../shared/data (maintainers only).

Usage: python scripts/make_sample.py [--shared ../shared/data]
The files it writes are committed; users never need ../shared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "data" / "sample"


def _span(df: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    lo = pd.Timestamp(start, tz="UTC").value // 1_000_000
    hi = pd.Timestamp(end, tz="UTC").value // 1_000_000
    return df[(df.timestamp >= lo) & (df.timestamp < hi)].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    shared = Path(args.shared)
    OUT.mkdir(parents=True, exist_ok=True)

    hourly = pd.read_parquet(shared / "binance_BTCUSDT_1h.parquet")
    hourly = _span(hourly, "2022-01-01", "2024-04-21")
    hourly.to_parquet(OUT / "btcusdt_1h.parquet", compression="zstd", index=False)

    minute = pd.read_parquet(shared / "binance_BTCUSDT_1m.parquet")
    minute = _span(minute, "2024-06-01", "2024-06-08")
    minute.to_parquet(OUT / "btcusdt_1m_2024-06-01_07.parquet", compression="zstd", index=False)

    funding = pd.read_parquet(shared / "binance_BTCUSDT_PERP_funding_8h.parquet")
    funding = _span(funding, "2022-01-01", "2024-06-08")
    funding.to_parquet(OUT / "btcusdt_perp_funding_8h.parquet", compression="zstd", index=False)

    for name in sorted(OUT.glob("*.parquet")):
        df = pd.read_parquet(name)
        print(f"{name.name}: {len(df)} rows, {name.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
