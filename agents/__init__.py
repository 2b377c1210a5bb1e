"""Agents: SB3 training, evaluation, tuning and paper trading."""
