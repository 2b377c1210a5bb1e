"""The simulation rules: config, state layout, sizing/execution/fees, accounting, risk, rewards,
the numba kernel and the envs that run it (imports `envs.market`, never `envs.data`)."""
