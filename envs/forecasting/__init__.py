"""Supervised forecasters whose walk-forward, out-of-sample predictions feed the observations.

Model of time
-------------
Bars are indexed ``0 .. n-1``; ``timestamp`` is a bar's open time (int64 ms UTC) and a bar's close
time is its open time plus the bar interval. A decision at bar ``t`` happens at the close of ``t``.

* A **label** for bar ``s`` with horizon ``k`` (``fwd_log_return``: ``log(close[s+k] / close[s])``;
  ``direction``: that return > 0; ``realized_vol``: the root sum of squared one-bar log returns of
  bars ``s+1 .. s+k``) becomes **known at the close of bar** ``s + k``.
* The inputs of bar ``s`` (the run's causal feature row plus the last ``n_lags`` one-bar log
  returns) are known at the close of ``s``.
* A model **fitted or updated at bar** ``f`` (at its close) may use the samples ``s`` with
  ``s + k + embargo <= f``: every label it sees was known at or before ``f``'s close. Purging
  follows from each label's horizon; ``embargo`` (bars, >= 0) only adds a gap.
* The **prediction used at bar** ``t`` comes from the latest model fitted or updated at a bar
  ``f <= t``, applied to the inputs of bar ``t``. Hence every label behind it was known by ``t``'s
  close. Each prediction row carries that model's ``model_id`` and ``train_label_end`` (ms UTC:
  the close time of bar ``max(s) + k``, the latest time a label it used became known);
  `join_predictions` refuses a row whose ``train_label_end`` is after its decision time.
* Preprocessing (the ridge scaler) is fitted inside each training window and saved with the model.
* The schedule is anchored at the span's first bar: the first fit happens at the first bar where
  ``min_train`` usable samples exist, refits every ``refit_every`` bars after it, online updates
  every ``update_every`` bars between refits. Any prefix of the data therefore yields exactly
  (bit-identically) the predictions of the full data for the bars it holds. Bars before the first
  fit are warm-up and get no prediction.

Modules: `targets` (labels and inputs), `models` (the `Forecaster` interface and the one registry),
`walk_forward` (the schedule, provenance, the join into observations), `cache` (Parquet cache).
See docs/forecasting.md.
"""
