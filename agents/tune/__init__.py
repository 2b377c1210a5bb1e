"""Hyperparameter search with Ray Tune: search spaces as data, ASHA + Optuna, resumable experiments.

`scripts/tune.py` composes ``conf/tune.yaml`` (the training config plus a ``tune`` preset from
``conf/tune/``) and calls `run_experiment`. Every trial rebuilds its typed `RunConfig` from the base
config plus its sampled values and trains through `agents.train.run` (no second training loop),
reporting each validation pass to Tune so ASHA can stop poor trials early.

Modules, one job each:

- `settings`: the validated ``tune:`` settings and their Hydra schema (derived via `schema_of`).
- `space`: the search-space language (``{dist: loguniform, low, high}`` or ``"loguniform(1e-5, 1e-3)"``).
- `dotted`: reading and writing dotted config keys.
- `trials`: the config of one trial (keys checked, samples applied, seed derived).
- `trainable`: the Ray trainable that trains one trial and reports each validation.
- `experiment`: prepare (validate) and run / resume an experiment.
- `results`, `best`, `reevaluate`, `report`: the table, best config, test re-evaluation, plots and markdown.

Seeds: each trial trains with ``train.seed + k`` (unless ``train.seed`` is itself searched), where ``k``
is the counter at the end of its Tune trial id with random search (0, 1, 2, ...) and
``crc32(trial_id) % 1_000_000`` with Optuna's hexadecimal ids: stable across retries and resumes. The
searcher is seeded with ``tune.seed`` (default ``train.seed``).
"""

from agents.tune.experiment import Experiment, prepare_experiment, run_experiment
from agents.tune.results import BestTrial, TuneSummary
from agents.tune.settings import TuneRunSchema, TuneSchema, TuneSettings, register_tune_configs
from agents.tune.space import ParamSpec, parse_space, to_tune_space
from agents.tune.trainable import ATTEMPTS_LOG, TIME_ATTR, TRIAL_RUN, quantgym_trial
from agents.tune.trials import check_space_keys, trial_config, trial_index_of

__all__ = [
    "ATTEMPTS_LOG", "TIME_ATTR", "TRIAL_RUN", "BestTrial", "Experiment", "ParamSpec", "TuneRunSchema", "TuneSchema",
    "TuneSettings", "TuneSummary", "check_space_keys", "parse_space", "prepare_experiment", "quantgym_trial",
    "register_tune_configs", "run_experiment", "to_tune_space", "trial_config", "trial_index_of",
]
