"""The policy of a saved SB3 model, shared by training, evaluation, walk-forward and tuning."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm

from agents.evaluation.runner import Policy


def sb3_policy(model: BaseAlgorithm) -> Policy:
    """Deterministic policy of an SB3 model, in the evaluator's policy signature."""
    return lambda obs, info, t: model.predict(obs, deterministic=True)[0]
