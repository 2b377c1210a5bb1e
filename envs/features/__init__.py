"""Causal feature builders (every value at bar t uses bars <= t only)."""
