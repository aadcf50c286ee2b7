"""The lifelong learner: an inverse-dynamics network trained online from a stream of windows.

River-like interface (``learn_one`` / ``predict_one`` and batch forms) around one torch model:

- **Prequential evaluation.** Every sample is scored *before* it is learned, so ``recent_nmse`` is an
  honest estimate of the error on unseen data (nothing it is scored on was trained on).
- **Normalization.** Two :class:`~invdyn_ros.learning.scaling.RunningScaler` s (inputs ``3n``,
  torques ``n``) are fitted online from every learned sample; the loss is the MSE in standardized
  torque space, so joints with large torques do not drown the small ones. Standardized inputs (and
  the targets inside the loss) are clipped to ``±input_clip``: while the statistics are young (e.g.
  the robot was at rest, a channel's std is at its floor) a new motion can produce values of 1e6
  standard deviations, which would blow up the recurrent cells; the clip keeps every step bounded.
  The same clip is used in :class:`~invdyn_ros.learning.predictor.Predictor` (it is part of the
  exported weights).
- **Replay.** A :class:`ReplayBuffer` holds a FIFO of the newest windows plus a reservoir sample
  (Algorithm R) of everything older, so batches mix what the robot does now with what it did long
  ago and old motions are not forgotten (catastrophic forgetting is the failure mode of naive
  online SGD on a robot that cycles through tasks).
- **Optimizer.** Adam with gradient clipping and ``ReduceLROnPlateau`` on an exponentially smoothed
  training loss (patience counted in steps). Default lr 1e-3: Huang et al. use 0.01 offline with
  plateau decay, but online, on small recurrent nets and with replay, 1e-2 made the LSTM jump
  between plateaus on the generated test data, 1e-3 (and 3e-3 for small nets) learns steadily.
  Plateau decay only ever lowers the rate, which is wrong for a lifelong learner (on KUKA-I the rate
  hit ``min_learning_rate`` after ~3000 steps and a new trajectory then stayed at nMSE 0.68 for
  20 s), so when the smoothed loss rises to ``lr_restart_factor`` × its best the rate goes back to
  ``learning_rate`` (counted in ``lr_restarts``).
- **Divergence guard.** A non-finite loss/gradient/weight, or a loss above ``divergence_factor`` ×
  the running median of recent losses that the last good snapshot does clearly better on (the same
  batch: a loss jump caused by *new data* is not divergence and must not freeze learning), restores
  the last good model + optimizer state (snapshotted every ``snapshot_every`` good steps) and halves
  the learning rate. Rollbacks are counted.
- **Robustness.** ``learn_one`` never raises on bad data: a non-finite or wrongly shaped sample is
  rejected and counted. Predictions are float64 numpy arrays.
- **Checkpoints.** One ``torch.save`` file of plain dicts/lists/tensors/str/int/float (loads with
  ``torch.load(weights_only=True)``), written atomically; a resumed learner predicts identically and
  continues (step count, learning rate, Adam moments, buffer, scalers, rng state).

This module holds :class:`OnlineLearner` (learning, prediction, the divergence guard and the
learning-rate schedule); its parts, re-exported here: :mod:`~invdyn_ros.learning.learner_config`
(:class:`LearnerConfig`), :mod:`~invdyn_ros.learning.replay_buffer` (:class:`ReplayBuffer`) and
:mod:`~invdyn_ros.learning.learner_checkpoint` (the checkpoint format, atomic save, verified load).
"""
from __future__ import annotations

import copy
import math
import os
from collections import deque
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from invdyn_ros.errors import ConfigError
# the learner's parts, re-exported: ``from invdyn_ros.learning.learner import ...`` keeps working
from invdyn_ros.learning.learner_checkpoint import CHECKPOINT_FORMAT_VERSION  # noqa: F401
from invdyn_ros.learning.learner_checkpoint import (atomic_torch_save, learner_from_state_dict,
                                                    learner_state_dict, load_checkpoint_dict)
from invdyn_ros.learning.learner_config import LearnerConfig
from invdyn_ros.learning.models import build_model, config_to_dict
from invdyn_ros.learning.replay_buffer import ReplayBuffer
from invdyn_ros.learning.scaling import RunningScaler
from invdyn_ros.stages.readiness import RollingNMSE

__all__ = ['LearnerConfig', 'ReplayBuffer', 'OnlineLearner', 'CHECKPOINT_FORMAT_VERSION',
           'load_checkpoint_dict', 'atomic_torch_save']

#: std floors of the learner's scalers: sensor noise on a joint that happens to be still must not be
#: blown up to thousands of standard deviations (rad, rad/s, rad/s² and Nm alike; 1e-3 is far
#: below any real motion or load change).
INPUT_STD_FLOOR = 1e-3
TARGET_STD_FLOOR = 1e-3

#: Larger magnitudes are rejected as corrupt: they are no physical joint state or torque in any unit
#: and would overflow float32 (buffer, model) into Inf.
MAX_ABS_VALUE = 1e12

#: Losses kept for the running median of the divergence test, and how many are needed before it acts.
_LOSS_HISTORY = 101
_LOSS_HISTORY_MIN = 20


# ==================================================================================== learner
class OnlineLearner:
    """One network learned online from ``(window (L, 3n), tau (n,))`` samples. See the module doc."""

    def __init__(self, n_joints: int, config: LearnerConfig | None = None) -> None:
        if isinstance(n_joints, bool) or not isinstance(n_joints, (int, np.integer)) or n_joints < 1:
            raise ConfigError(f'n_joints must be a positive integer, got {n_joints!r}')
        self.config = (config or LearnerConfig()).validate()
        cfg = self.config
        self.n_joints = n = int(n_joints)
        self.width = 3 * n
        self.window = cfg.window
        # Seed locally: model init must be reproducible without disturbing the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.model: nn.Module = build_model(cfg.model, n, **cfg.model_options)
        self.model.float()
        self.kind = cfg.model
        self.in_scaler = RunningScaler(self.width, std_floor=INPUT_STD_FLOOR)
        self.out_scaler = RunningScaler(n, std_floor=TARGET_STD_FLOOR)
        self.buffer = ReplayBuffer(cfg.buffer_capacity, cfg.recent_capacity, cfg.window, self.width,
                                   n, seed=cfg.seed)
        # the weights predictions use: the model itself, or an average of its iterates
        self._averaged: AveragedModel | None = None
        if cfg.weight_ema_decay > 0.0:
            self._averaged = AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(float(cfg.weight_ema_decay)),
                use_buffers=True)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.learning_rate,
                                          weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer, mode='min', factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.min_learning_rate)
        self.samples = 0
        self.steps = 0
        self.good_steps = 0
        self.rollbacks = 0
        self.counters = {'rejected_nonfinite': 0, 'rejected_shape': 0, 'rejected_magnitude': 0,
                         'nonfinite_predictions': 0,
                         'divergence_nonfinite': 0, 'divergence_spike': 0, 'accepted_spikes': 0,
                         'lr_restarts': 0}
        self.loss_ema: float | None = None
        self.last_loss: float | None = None
        self._loss_hist: deque[float] = deque(maxlen=_LOSS_HISTORY)
        self._credit = 0.0
        # prequential errors (raw torque units) of the last ready_window samples
        self._recent = RollingNMSE(n, cfg.ready_window)
        self._snapshot: tuple[dict, dict] | None = None
        self._shadow: nn.Module | None = None
        self._take_snapshot()

    # ---------------------------------------------------------------- properties
    @property
    def predictor_model(self) -> nn.Module:
        """The network predictions come from: the weight average (``weight_ema_decay`` > 0) or
        the trained model itself."""
        return self._averaged.module if self._averaged is not None else self.model

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]['lr'])

    @property
    def recent_nmse(self) -> float:
        """Mean over joints of the prequential MSE over the last ``ready_window`` samples divided by
        the torque variance seen so far (the target scaler's); ``inf`` before any sample."""
        return self._recent.value(np.square(self.out_scaler.std))

    @property
    def ready(self) -> bool:
        return self.samples >= self.config.min_samples and self.recent_nmse < self.config.ready_nmse

    def stats(self) -> dict[str, Any]:
        nmse = self.recent_nmse
        return {
            'samples': self.samples, 'steps': self.steps,
            'loss': float(self.loss_ema) if self.loss_ema is not None else None,
            'lr': self.lr, 'buffer': len(self.buffer),
            'recent_nmse': nmse if math.isfinite(nmse) else None,
            'ready': self.ready, 'rollbacks': self.rollbacks, **self.counters,
        }

    # ---------------------------------------------------------------- scaling helpers
    def _scale_inputs(self, x: torch.Tensor) -> torch.Tensor:
        clip = self.config.input_clip
        return self.in_scaler.transform(x).clamp_(-clip, clip)

    def _valid(self, window: Any, tau: Any | None) -> tuple[np.ndarray, np.ndarray | None] | None:
        """Validated float64 copies, or None (counted) for a bad sample. Never raises."""
        try:
            w = np.asarray(window, dtype=np.float64)
            t = None if tau is None else np.asarray(tau, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            self.counters['rejected_shape'] += 1
            return None
        if w.shape != (self.window, self.width) or (t is not None and t.shape != (self.n_joints,)):
            self.counters['rejected_shape'] += 1
            return None
        if not np.isfinite(w).all() or (t is not None and not np.isfinite(t).all()):
            self.counters['rejected_nonfinite'] += 1
            return None
        if np.abs(w).max() > MAX_ABS_VALUE or (t is not None and np.abs(t).max() > MAX_ABS_VALUE):
            self.counters['rejected_magnitude'] += 1   # would overflow float32 (buffer, model)
            return None
        return w, t

    # ---------------------------------------------------------------- prediction
    def predict_many(self, windows: Any) -> np.ndarray:
        """Torques ``(B, n)`` for windows ``(B, L', 3n)`` (any L' ≥ 1), float64, eval mode.

        Raises ValueError on a wrong shape or a non-finite value (a NaN torque must never be
        produced silently)."""
        x = torch.as_tensor(np.asarray(windows, dtype=np.float32))
        if x.dim() != 3 or x.shape[-1] != self.width:
            raise ValueError(f'windows must be (B, L, {self.width}), got {tuple(x.shape)}')
        if not bool(torch.isfinite(x).all()):
            raise ValueError('windows contain NaN/Inf (or values beyond float32): refusing to '
                             'predict from them')
        model = self.predictor_model
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                y = model(self._scale_inputs(x))
                y = self.out_scaler.inverse_transform(y)
        finally:
            model.train(was_training)
        return y.double().numpy()

    def predict_one(self, window: Any) -> np.ndarray:
        """Torque ``(n,)`` for one window ``(L', 3n)``."""
        w = np.asarray(window, dtype=np.float32)
        if w.ndim != 2:
            raise ValueError(f'window must be (L, {self.width}), got {w.shape}')
        return self.predict_many(w[None])[0]

    # ---------------------------------------------------------------- learning
    def learn_one(self, window: Any, tau: Any) -> bool:
        """Score the sample (prequential), add it to the buffer and scalers, run the due Adam steps.

        Returns False when the sample was rejected (non-finite or wrong shape; counted). Never raises
        on data.
        """
        return self.learn_many([window], [tau]) == 1

    def learn_many(self, windows: Any, taus: Any, chunk: int = 32) -> int:
        """``learn_one`` for a sequence; scoring is batched per ``chunk`` samples (each sample is
        scored by the model as it was before the chunk, so still before it is learned). Returns the
        number of accepted samples."""
        try:
            n_items = len(windows)
            if len(taus) != n_items:
                raise ValueError
        except (TypeError, ValueError):
            self.counters['rejected_shape'] += 1
            return 0
        accepted = 0
        for start in range(0, n_items, chunk):
            good_w, good_t = [], []
            for i in range(start, min(start + chunk, n_items)):
                v = self._valid(windows[i], taus[i])
                if v is not None:
                    good_w.append(v[0])
                    good_t.append(v[1])
            if not good_w:
                continue
            W, T = np.stack(good_w), np.stack(good_t)
            self._score(W, T)
            for w, t in zip(W, T):
                self.buffer.add(w, t)
            self.in_scaler.partial_fit(W[:, -1, :])
            self.out_scaler.partial_fit(T)
            self.samples += len(W)
            accepted += len(W)
            self._credit += self.config.updates_per_sample * len(W)
            while self._credit >= 1.0:
                self._credit -= 1.0
                if self.step() is None and len(self.buffer) < self._min_buffer():
                    self._credit = 0.0   # not enough data yet: do not bank steps for later
                    break
        return accepted

    def _min_buffer(self) -> int:
        return min(self.config.batch_size, max(self.config.min_samples, 1))

    def _score(self, W: np.ndarray, T: np.ndarray) -> None:
        pred = self.predict_many(W)
        err = T - pred
        bad = ~np.isfinite(err).all(axis=1)
        if bad.any():   # a broken prediction counts as a very bad one, never as NaN
            self.counters['nonfinite_predictions'] += int(bad.sum())
            err[bad] = 10.0 * self.out_scaler.std + np.abs(T[bad] - self.out_scaler.mean)
        self._recent.push_many(err)

    def fit_scalers(self, windows: Any, taus: Any) -> None:
        """Pre-fit the scalers from recorded data (all rows of the windows; non-finite rows skipped)."""
        W = np.asarray(windows, dtype=np.float64).reshape(-1, self.width)
        T = np.asarray(taus, dtype=np.float64).reshape(-1, self.n_joints)
        self.in_scaler.partial_fit(W[np.isfinite(W).all(axis=1)])
        self.out_scaler.partial_fit(T[np.isfinite(T).all(axis=1)])

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        X, Y = self.buffer.sample(self.config.batch_size, self.config.recent_fraction)
        clip = self.config.input_clip
        x = self._scale_inputs(torch.from_numpy(X))
        y = self.out_scaler.transform(torch.from_numpy(Y)).clamp_(-clip, clip)
        return x, y

    def step(self) -> float | None:
        """One Adam update on a batch from the buffer; returns its loss (standardized MSE).

        Returns None when the buffer holds fewer than ``min(batch_size, min_samples)`` samples or the
        step was rolled back (divergence); the model then holds the last good weights.
        """
        if len(self.buffer) < self._min_buffer():
            return None
        x, y = self._batch()
        self.model.train()
        pred = self.model(x)
        loss = torch.nn.functional.mse_loss(pred, y)
        value = float(loss.detach())
        self.steps += 1
        if not math.isfinite(value):
            self.counters['divergence_nonfinite'] += 1
            self._rollback()
            return None
        if len(self._loss_hist) >= _LOSS_HISTORY_MIN:
            median = float(np.median(self._loss_hist))
            if value > self.config.divergence_factor * median:
                if self._snapshot_loss(x, y) * 2.0 < value:
                    self.counters['divergence_spike'] += 1
                    self._rollback()
                    return None
                self.counters['accepted_spikes'] += 1   # new data is hard, the weights are fine
        # These weights produced a sane loss: they are a good rollback point.
        if self.good_steps % self.config.snapshot_every == 0:
            self._take_snapshot()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if not torch.isfinite(norm):
            self.counters['divergence_nonfinite'] += 1
            self._rollback()
            return None
        self.optimizer.step()
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            self.counters['divergence_nonfinite'] += 1
            self._rollback()
            return None
        self.good_steps += 1
        if self._averaged is not None:
            self._averaged.update_parameters(self.model)
        self.last_loss = value
        self._loss_hist.append(value)
        a = self.config.loss_smoothing
        self.loss_ema = value if self.loss_ema is None else (1 - a) * self.loss_ema + a * value
        self.scheduler.step(self.loss_ema)
        self._maybe_restart_lr()
        return value

    def _maybe_restart_lr(self) -> None:
        """Lifelong learning: when the smoothed loss has risen to ``lr_restart_factor`` × the best it
        has been (the robot does something new), go back to the initial learning rate. Plateau decay
        alone only ever lowers the rate, so after the first few thousand steps a new motion would be
        learned at ``min_learning_rate``, i.e. hardly at all. Divergent steps never reach the smoothed
        loss (they are rolled back first), so this reacts to new data, not to instability."""
        factor = self.config.lr_restart_factor
        best = float(self.scheduler.best)
        if factor <= 0 or not math.isfinite(best) or best <= 0 or self.loss_ema <= factor * best:
            return
        if self.lr < self.config.learning_rate:
            for g in self.optimizer.param_groups:
                g['lr'] = self.config.learning_rate
            self.counters['lr_restarts'] += 1
        self.scheduler.best = self.loss_ema
        self.scheduler.num_bad_epochs = 0

    def _take_snapshot(self) -> None:
        self._snapshot = (copy.deepcopy(self.model.state_dict()),
                          copy.deepcopy(self.optimizer.state_dict()))

    def _snapshot_loss(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if self._shadow is None:
            self._shadow = copy.deepcopy(self.model)
        self._shadow.load_state_dict(self._snapshot[0])
        self._shadow.train(self.model.training)
        with torch.no_grad():
            v = float(torch.nn.functional.mse_loss(self._shadow(x), y))
        return v if math.isfinite(v) else math.inf

    def _rollback(self) -> None:
        """Restore the last good weights + Adam state and halve the learning rate."""
        lr = max(self.lr * 0.5, self.config.min_learning_rate)
        model_state, opt_state = self._snapshot
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(copy.deepcopy(opt_state))
        for g in self.optimizer.param_groups:
            g['lr'] = lr
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.num_bad_epochs = 0
        self.rollbacks += 1

    # ---------------------------------------------------------------- export / persistence
    def model_config_dict(self) -> dict[str, Any]:
        return config_to_dict(self.model.config)

    def export_weights(self) -> dict[str, Any]:
        """What a :class:`~invdyn_ros.learning.predictor.Predictor` needs: model + scalers, CPU tensor copies."""
        return {
            'kind': self.kind, 'n_joints': self.n_joints, 'window': self.window,
            'model_config': self.model_config_dict(),
            'model': {k: v.detach().cpu().clone()
                      for k, v in self.predictor_model.state_dict().items()},
            'in_scaler': self.in_scaler.state_dict(), 'out_scaler': self.out_scaler.state_dict(),
            'input_clip': float(self.config.input_clip),
            'steps': self.steps, 'samples': self.samples,
        }

    def state_dict(self, include_buffer: bool = True) -> dict[str, Any]:
        """The checkpoint dict (plain types and tensors only; :mod:`invdyn_ros.learning.learner_checkpoint`)."""
        return learner_state_dict(self, include_buffer)

    def save(self, path: str | os.PathLike, include_buffer: bool = True) -> None:
        """Atomic checkpoint (see :func:`atomic_torch_save`)."""
        atomic_torch_save(self.state_dict(include_buffer), path)

    @classmethod
    def load(cls, path: str | os.PathLike, config: LearnerConfig | None = None,
             n_joints: int | None = None) -> 'OnlineLearner':
        """Resume from a checkpoint. ``config`` / ``n_joints``, if given, are what the caller expects:
        a different model kind, model options, window or joint count raises :class:`CheckpointError`;
        the other (training) parameters of ``config`` replace the saved ones (the learning rate and
        Adam state of the checkpoint are kept)."""
        ckpt = load_checkpoint_dict(path)
        return cls.from_state_dict(ckpt, config=config, n_joints=n_joints, source=str(path))

    @classmethod
    def from_state_dict(cls, ckpt: Mapping[str, Any], config: LearnerConfig | None = None,
                        n_joints: int | None = None, source: str = 'checkpoint') -> 'OnlineLearner':
        return learner_from_state_dict(cls, ckpt, config, n_joints, source)

    def __repr__(self) -> str:
        return (f'OnlineLearner(kind={self.kind!r}, n_joints={self.n_joints}, samples={self.samples}, '
                f'steps={self.steps})')
