"""Names and the provenance rule shared across the forecasting package (no imports from it, so no cycles).

``FORECAST_PREFIX`` names the forecast columns (``fc_<target>``); ``ENSEMBLE`` / ``ENSEMBLE_DEFAULTS`` the
inverse-error ensemble; `check_provenance` is the one check that no forecast row comes from a model
trained on a label known after the row's decision time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: prefix of the forecast columns joined into the observations (``fc_<target>``)
FORECAST_PREFIX = "fc_"
#: model name of the inverse-error ensemble (not a `Forecaster`: it combines members' walk-forward outputs)
ENSEMBLE = "ensemble"
ENSEMBLE_DEFAULTS: dict[str, object] = {"members": ["ridge", "gbm"], "trailing": 500, "member_params": {}}


def check_provenance(predictions: pd.DataFrame, interval_ms: int) -> None:
    """Raise ``ValueError`` if any row's model used a label known after that row's decision time.

    The decision time of a row is the close of its bar: ``timestamp + interval_ms``.
    """
    decision = predictions["timestamp"].to_numpy(dtype=np.int64) + int(interval_ms)
    end = predictions["train_label_end"].to_numpy(dtype=np.int64)
    bad = np.flatnonzero(end > decision)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"look-ahead: {bad.size} forecast row(s) come from a model trained on labels known after the "
            f"decision (first: timestamp={int(predictions['timestamp'].iloc[i])}, train_label_end={int(end[i])} > "
            f"decision time {int(decision[i])}, model_id={predictions['model_id'].iloc[i]!r}); regenerate the "
            "predictions with envs.forecasting.walk_forward"
        )
