"""Data side: Parquet store, downloads, cleaning and resampling of OHLCV bars."""
