"""Market feeds: historical files and live ccxt feeds, all yielding the same bar format."""
