"""Sequence forecasters in torch: LSTM and TCN (seeded, deterministic on CPU).

Both read the last ``seq_len`` input rows of each sample (the engine hands them a ``(rows, seq_len,
inputs)`` array; rows before the span's first valid input are zeros). Inputs are standardised with
the training window's mean/std (saved with the model); regression targets are standardised too and
mapped back on prediction; ``direction`` trains a logit with binary cross-entropy.

Training: Adam, mini-batches drawn with a seeded generator, gradient-norm clipping (``clip_norm``),
early stopping on the **time-ordered tail** of the window (the last ``val_frac`` of the samples, never
shuffled into training; the best epoch's weights are kept). An online update runs ``update_steps``
gradient steps on the rows whose labels became known since. Every fit/update/predict runs with
``num_threads`` torch threads (restored afterwards) and deterministic algorithms, so the same data and
seed give bit-identical predictions.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from envs.forecasting.base import FloatArray, Forecaster, ModelContext, register

logger = logging.getLogger(__name__)

#: rows per prediction batch (every batch is padded to exactly this many rows)
PREDICT_BATCH = 32

_COMMON: dict[str, Any] = {
    "seq_len": 16,
    "hidden": 32,
    "epochs": 20,
    "batch_size": 256,
    "learning_rate": 3e-3,
    "clip_norm": 1.0,
    "val_frac": 0.2,
    "patience": 3,
    "update_steps": 5,
    "num_threads": 1,
}


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _TorchForecaster(Forecaster):
    """Shared training loop, scaling and persistence of the torch sequence models."""

    defaults: ClassVar[Mapping[str, Any]] = _COMMON
    sequence = True

    def __init__(self, context: ModelContext, params: Mapping[str, Any] | None = None) -> None:
        super().__init__(context, params)
        p = self.params
        for key in ("seq_len", "hidden", "epochs", "batch_size", "patience", "num_threads"):
            if int(p[key]) < 1:
                raise ValueError(f"forecaster.params.{key}={p[key]} is invalid: must be >= 1")
        if not 0.0 < float(p["val_frac"]) < 0.5:
            raise ValueError(f"forecaster.params.val_frac={p['val_frac']} is invalid: must be in (0, 0.5)")
        self.seq_len = int(p["seq_len"])
        self.net: Any = None
        self.x_mean: FloatArray | None = None
        self.x_std: FloatArray | None = None
        self.y_mean, self.y_std = 0.0, 1.0
        self._updates = 0

    def _build(self, n_inputs: int) -> Any:
        raise NotImplementedError

    def _tensor(self, X: FloatArray) -> Any:
        import torch

        assert self.x_mean is not None and self.x_std is not None
        return torch.from_numpy(((X - self.x_mean) / self.x_std).astype(np.float32))

    def _loss(self, out: Any, y: Any) -> Any:
        import torch.nn.functional as F

        if self.context.is_classifier:
            return F.binary_cross_entropy_with_logits(out, y)
        return F.mse_loss(out, y)

    def _target(self, y: FloatArray) -> Any:
        import torch

        scaled = y if self.context.is_classifier else (y - self.y_mean) / self.y_std
        return torch.from_numpy(np.asarray(scaled, dtype=np.float32))

    def fit(self, X: FloatArray, y: FloatArray) -> None:
        import torch

        flat = X.reshape(-1, X.shape[-1])
        self.x_mean = flat.mean(axis=0)
        self.x_std = np.where(flat.std(axis=0) > 0, flat.std(axis=0), 1.0)
        if not self.context.is_classifier:
            self.y_mean = float(np.mean(y))
            self.y_std = float(np.std(y)) or 1.0
        n_val = max(1, int(round(len(y) * float(self.params["val_frac"]))))
        xt, yt = self._tensor(X), self._target(y)
        with _torch_threads(int(self.params["num_threads"])), _deterministic():
            gen = torch.Generator().manual_seed(int(self.context.seed))
            torch.manual_seed(int(self.context.seed))  # weight init (restored by _deterministic)
            self.net = self._build(X.shape[-1])
            opt = torch.optim.Adam(self.net.parameters(), lr=float(self.params["learning_rate"]))
            best, best_state, waited = float("inf"), None, 0
            tr_x, tr_y, va_x, va_y = xt[:-n_val], yt[:-n_val], xt[-n_val:], yt[-n_val:]
            for _ in range(int(self.params["epochs"])):
                self.net.train()
                for b in torch.randperm(len(tr_y), generator=gen).split(int(self.params["batch_size"])):
                    self._step(opt, tr_x[b], tr_y[b])
                self.net.eval()
                with torch.no_grad():
                    val = float(self._loss(self.net(va_x), va_y))
                if val < best - 1e-12:
                    best, waited = val, 0
                    best_state = {k: v.clone() for k, v in self.net.state_dict().items()}
                else:
                    waited += 1
                    if waited >= int(self.params["patience"]):
                        break
            if best_state is not None:
                self.net.load_state_dict(best_state)

    def _step(self, opt: Any, x: Any, y: Any) -> None:
        import torch

        opt.zero_grad()
        loss = self._loss(self.net(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), float(self.params["clip_norm"]))
        opt.step()

    def update(self, X: FloatArray, y: FloatArray, n_new: int) -> None:
        import torch

        if self.net is None:
            raise RuntimeError(f"{self.name} forecaster updated before fit")
        steps = int(self.params["update_steps"])
        if n_new < 1 or steps == 0:
            return
        xt, yt = self._tensor(X[-n_new:]), self._target(y[-n_new:])
        with _torch_threads(int(self.params["num_threads"])), _deterministic():
            opt = torch.optim.Adam(self.net.parameters(), lr=float(self.params["learning_rate"]))
            self.net.train()
            for _ in range(steps):
                self._step(opt, xt, yt)
            self.net.eval()
        self._updates += 1

    def predict(self, X: FloatArray) -> FloatArray:
        import torch

        if self.net is None:
            raise RuntimeError(f"{self.name} forecaster used before fit")
        # fixed-shape batches: CPU kernels pick their algorithm by batch size, so a row's output could
        # differ in the last bits with the batch it is in; padding to PREDICT_BATCH rows makes every row's
        # prediction independent of how many bars are predicted together (prefix == full, bit for bit)
        x = self._tensor(X)
        pad = (-len(x)) % PREDICT_BATCH
        if pad:
            x = torch.cat([x, torch.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
        with _torch_threads(int(self.params["num_threads"])), torch.no_grad():
            self.net.eval()
            out = torch.cat([self.net(b) for b in x.split(PREDICT_BATCH)])[: len(X)].numpy().astype(np.float64)
        if self.context.is_classifier:
            return 1.0 / (1.0 + np.exp(-out))
        return out * self.y_std + self.y_mean

    def _save(self, directory: Path) -> None:
        import torch

        torch.save(self.net.state_dict(), directory / "net.pt")
        assert self.x_mean is not None and self.x_std is not None
        scal = {"x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(), "y_mean": self.y_mean,
                "y_std": self.y_std}
        (directory / "scaler.json").write_text(json.dumps(scal), encoding="utf-8")

    def _load(self, directory: Path) -> None:
        import torch

        scal = json.loads((directory / "scaler.json").read_text(encoding="utf-8"))
        self.x_mean, self.x_std = np.asarray(scal["x_mean"]), np.asarray(scal["x_std"])
        self.y_mean, self.y_std = float(scal["y_mean"]), float(scal["y_std"])
        self.net = self._build(self.x_mean.size)
        self.net.load_state_dict(torch.load(directory / "net.pt", weights_only=True))
        self.net.eval()


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """Deterministic torch algorithms and a forked global RNG (the caller's RNG state is untouched)."""
    import torch

    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(before)


def _lstm(n_inputs: int, hidden: int) -> Any:
    import torch

    class LSTMNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = torch.nn.LSTM(n_inputs, hidden, batch_first=True)
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out, _ = self.lstm(x)
            return self.head(out[:, -1, :]).squeeze(-1)

    return LSTMNet()


def _tcn(n_inputs: int, hidden: int, levels: int = 3, kernel: int = 3) -> Any:
    import torch

    class CausalBlock(torch.nn.Module):
        def __init__(self, c_in: int, dilation: int) -> None:
            super().__init__()
            self.pad = (kernel - 1) * dilation
            self.conv = torch.nn.Conv1d(c_in, hidden, kernel, dilation=dilation)
            self.skip = torch.nn.Conv1d(c_in, hidden, 1) if c_in != hidden else torch.nn.Identity()

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, channels, time)
            y = self.conv(torch.nn.functional.pad(x, (self.pad, 0)))  # left pad only: causal
            return torch.relu(y) + self.skip(x)

    class TCNNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.Sequential(*[CausalBlock(n_inputs if i == 0 else hidden, 2**i)
                                                for i in range(levels)])
            self.head = torch.nn.Linear(hidden, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, time, inputs)
            h = self.blocks(x.transpose(1, 2))
            return self.head(h[:, :, -1]).squeeze(-1)

    return TCNNet()


@register
class LSTMForecaster(_TorchForecaster):
    """One-layer LSTM over the last ``seq_len`` input rows; a linear head on the last step."""

    name = "lstm"

    def _build(self, n_inputs: int) -> Any:
        return _lstm(n_inputs, int(self.params["hidden"]))


@register
class TCNForecaster(_TorchForecaster):
    """Temporal convolutional network: 3 causal dilated conv blocks (dilations 1, 2, 4), residual."""

    name = "tcn"

    def _build(self, n_inputs: int) -> Any:
        return _tcn(n_inputs, int(self.params["hidden"]))
