"""Bars in memory: the bar schema and its checks, `MarketData`, the feature normaliser, the
always-on price features and the one timeframe / timestamp module."""
