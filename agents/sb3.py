"""Stable-Baselines3 algorithms behind one registry: build, save and load models.

YAML keys under ``agent.algo_kwargs`` are exactly the algorithm's constructor keywords and
``agent.policy_kwargs`` its policy's; activation functions are given by name (``tanh``, ``relu``...).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import torch
from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from agents.config import AgentConfig

logger = logging.getLogger(__name__)

ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "ppo": PPO, "sac": SAC, "a2c": A2C, "td3": TD3, "dqn": DQN, "ddpg": DDPG,
}
ACTIVATIONS: dict[str, type[torch.nn.Module]] = {
    "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU, "elu": torch.nn.ELU, "leaky_relu": torch.nn.LeakyReLU,
    "gelu": torch.nn.GELU, "silu": torch.nn.SiLU,
}


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """The registered class for ``agent.name``."""
    if name not in ALGORITHMS:
        raise ValueError(f"agent.name={name!r} is not registered; choose one of {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def policy_kwargs(cfg: AgentConfig) -> dict[str, Any]:
    """``agent.policy_kwargs`` with activation names mapped to torch classes."""
    kwargs = dict(cfg.policy_kwargs)
    act = kwargs.get("activation_fn")
    if isinstance(act, str):
        if act not in ACTIVATIONS:
            raise ValueError(f"agent.policy_kwargs.activation_fn={act!r} unknown; choose one of {sorted(ACTIVATIONS)}")
        kwargs["activation_fn"] = ACTIVATIONS[act]
    return kwargs


def build_model(cfg: AgentConfig, env: VecEnv, seed: int, device: str, tensorboard_log: str | None) -> BaseAlgorithm:
    """Instantiate the configured algorithm on ``env``.

    Raises:
        ValueError: naming any ``agent.algo_kwargs`` key the algorithm does not accept.
    """
    cls = algorithm_class(cfg.name)
    accepted = set(inspect.signature(cls.__init__).parameters)
    unknown = sorted(set(cfg.algo_kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"agent.algo_kwargs has key(s) {unknown} that {cls.__name__} does not accept; "
            f"valid keys include {sorted(accepted - {'self', 'policy', 'env'})}"
        )
    logger.info("Instantiating %s <%s> with %s", cfg.name, cls.__name__, cfg.algo_kwargs)
    return cls(
        cfg.policy, env, seed=seed, device=device, tensorboard_log=tensorboard_log,
        policy_kwargs=policy_kwargs(cfg), verbose=0, **cfg.algo_kwargs,
    )


def load_model(name: str, path: str | Path, env: VecEnv | None = None, device: str = "cpu") -> BaseAlgorithm:
    """Load a saved model of algorithm ``name`` (optionally attaching ``env``)."""
    return algorithm_class(name).load(str(path), env=env, device=device)
