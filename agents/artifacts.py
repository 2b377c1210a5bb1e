"""What runs share besides the run folder: the feature cache location and the policy of a saved SB3 model.

The feature cache (features keyed by the data's content hash and the feature config) defaults to
``data/cache/features`` under the current working directory (the project root when run from there),
never inside the installed package; ``QUANTGYM_FEATURE_CACHE`` moves it. numba's compile cache is set
by ``NUMBA_CACHE_DIR`` (see `envs`), run folders by Hydra's ``hydra.run.dir`` (``outputs/`` by default).
"""

from __future__ import annotations

import os
from pathlib import Path

from stable_baselines3.common.base_class import BaseAlgorithm

from agents.evaluation.runner import Policy

#: environment variable that moves the feature cache
FEATURE_CACHE_ENV = "QUANTGYM_FEATURE_CACHE"
#: feature cache shared by runs (git-ignored); a relative path is resolved against the working directory
FEATURE_CACHE = Path(os.environ.get(FEATURE_CACHE_ENV) or Path("data") / "cache" / "features")


def sb3_policy(model: BaseAlgorithm) -> Policy:
    """Deterministic policy of an SB3 model, in the evaluator's policy signature."""
    return lambda obs, info, t: model.predict(obs, deterministic=True)[0]
