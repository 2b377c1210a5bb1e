"""Where quantgym writes besides a run's own folder: the ``paths:`` config node.

Relative paths are taken from the current working directory (the project root when run from there);
nothing is ever written inside the installed package. numba's compile cache is not part of this
node: it must be known before the kernels are declared, at import, so ``NUMBA_CACHE_DIR`` sets it
(default ``.cache/numba`` under the working directory, see `envs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: environment variable that moves the feature cache when ``paths.feature_cache`` is not set
FEATURE_CACHE_ENV = "QUANTGYM_FEATURE_CACHE"
DEFAULT_FEATURE_CACHE = "data/cache/features"


@dataclass(frozen=True, slots=True)
class PathsConfig:
    """Output and cache locations (``paths.*``).

    Attributes:
        outputs: root of the run folders; Hydra's run dir is ``<outputs>/<task_name>/<date_time>``.
        feature_cache: folder of the feature cache (features keyed by the data's content hash and the
            feature config), shared by runs; None = ``$QUANTGYM_FEATURE_CACHE`` or ``data/cache/features``.
    """

    outputs: str = "outputs"
    feature_cache: str | None = None

    @property
    def feature_cache_dir(self) -> Path:
        """The feature cache folder (relative to the working directory unless absolute)."""
        return Path(self.feature_cache or os.environ.get(FEATURE_CACHE_ENV) or DEFAULT_FEATURE_CACHE)
