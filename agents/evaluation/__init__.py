"""Evaluation: baselines, statistics of skill vs. luck, reports and plots."""
