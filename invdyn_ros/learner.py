"""The lifelong learner: an inverse-dynamics network trained online from a stream of windows.

River-like interface (``learn_one`` / ``predict_one`` and batch forms) around one torch model:

- **Prequential evaluation.** Every sample is scored *before* it is learned, so ``recent_nmse`` is an
  honest estimate of the error on unseen data (nothing it is scored on was trained on).
- **Normalization.** Two :class:`~invdyn_ros.scaling.RunningScaler` s (inputs ``3n``, torques ``n``)
  are fitted online from every learned sample; the loss is the MSE in standardized torque space, so
  joints with large torques do not drown the small ones. Standardized inputs (and the targets inside
  the loss) are clipped to ``±input_clip``: while the statistics are young (e.g. the robot was at
  rest, a channel's std is at its floor) a new motion can produce values of 1e6 standard deviations,
  which would blow up the recurrent cells; the clip keeps every step bounded. The same clip is used
  in :class:`~invdyn_ros.predictor.Predictor` (it is part of the exported weights).
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
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import zipfile
import pickle
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import __version__
from .atomic import atomic_write
from .checkpoints import verified_file
from .errors import CheckpointError, ConfigError
from .models import MODEL_KINDS, build_model, config_to_dict, make_config
from .readiness import RollingNMSE
from .scaling import RunningScaler

__all__ = ['LearnerConfig', 'ReplayBuffer', 'OnlineLearner', 'CHECKPOINT_FORMAT_VERSION',
           'load_checkpoint_dict', 'atomic_torch_save']

CHECKPOINT_FORMAT_VERSION = 1

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


# ==================================================================================== config
@dataclass(frozen=True)
class LearnerConfig:
    """Hyper-parameters of one :class:`OnlineLearner` (see the module docstring for the why).

    ``updates_per_sample``: Adam steps per learned sample on average (0.1: one batch of 128 every ten
    samples, i.e. each sample is seen ~13 times while it is in the FIFO at 100 Hz).
    ``ready_nmse`` / ``ready_window`` / ``min_samples``: ``ready`` once the prequential nMSE over the
    last ``ready_window`` samples is below ``ready_nmse`` and at least ``min_samples`` were learned.
    Extra fields beyond the architecture contract: ``snapshot_every`` (good steps between rollback
    snapshots), ``input_clip`` (standardized units), ``loss_smoothing`` (EMA weight of the
    smoothed loss the plateau scheduler watches), ``lr_restart_factor`` (back to ``learning_rate``
    when the smoothed loss rises to this multiple of its best: new motions; 0 disables).
    ``weight_ema_decay``: predictions (``predict_*``, ``export_weights``) use an exponential moving
    average of the weights over the Adam steps (``torch.optim.swa_utils.AveragedModel`` with
    ``get_ema_multi_avg_fn(decay)``) instead of the last iterate, which lifelong learning at a
    non-vanishing learning rate keeps jittering; 0 (default) = the last iterate. The average
    lags the iterate by about ``1 / (1 - decay)`` steps.
    """

    model: str = 'lstm'
    model_options: dict = field(default_factory=dict)
    window: int = 10
    batch_size: int = 128
    buffer_capacity: int = 20000
    recent_capacity: int = 2000
    recent_fraction: float = 0.5
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    plateau_patience: int = 200
    plateau_factor: float = 0.5
    min_learning_rate: float = 1e-5
    updates_per_sample: float = 0.1
    min_samples: int = 256
    ready_nmse: float = 0.1
    ready_window: int = 500
    divergence_factor: float = 20.0
    seed: int = 0
    snapshot_every: int = 50
    input_clip: float = 10.0
    loss_smoothing: float = 0.02
    lr_restart_factor: float = 3.0
    weight_ema_decay: float = 0.0

    def __post_init__(self) -> None:
        # A private copy, so a caller mutating its dict later cannot change a frozen config.
        object.__setattr__(self, 'model_options', dict(self.model_options or {}))

    def validate(self) -> 'LearnerConfig':
        """Raise :class:`ConfigError` naming the first bad parameter; returns self for chaining."""
        if self.model not in MODEL_KINDS:
            raise ConfigError(f'model must be one of {MODEL_KINDS}, got {self.model!r}')
        if not isinstance(self.model_options, dict):
            raise ConfigError(f'model_options must be a dict, got {type(self.model_options).__name__}')
        make_config(self.model, 1, **{k: v for k, v in self.model_options.items() if k != 'n_joints'})

        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ConfigError(f'{name} must be an integer >= {lo}, got {v!r}')

        def number(name: str, lo: float, hi: float = math.inf, lo_open: bool = False,
                   hi_open: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) \
                and math.isfinite(float(v))
            if ok:
                v = float(v)
                ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
            if not ok:
                lb, rb = ('(' if lo_open else '['), (')' if hi_open else ']')
                raise ConfigError(f'{name} must be a finite number in {lb}{lo}, {hi}{rb}, got {v!r}')

        integer('window', 1)
        integer('batch_size', 1)
        integer('buffer_capacity', 1)
        integer('recent_capacity', 0)
        if self.recent_capacity > self.buffer_capacity:
            raise ConfigError(f'recent_capacity ({self.recent_capacity}) must be <= buffer_capacity '
                              f'({self.buffer_capacity})')
        number('recent_fraction', 0.0, 1.0)
        number('learning_rate', 0.0, lo_open=True)
        number('weight_decay', 0.0)
        number('grad_clip', 0.0, lo_open=True)
        integer('plateau_patience', 0)
        number('plateau_factor', 0.0, 1.0, lo_open=True, hi_open=True)
        number('min_learning_rate', 0.0)
        if self.min_learning_rate > self.learning_rate:
            raise ConfigError(f'min_learning_rate ({self.min_learning_rate}) must be <= learning_rate '
                              f'({self.learning_rate})')
        number('updates_per_sample', 0.0, 64.0)
        integer('min_samples', 0)
        number('ready_nmse', 0.0, lo_open=True)
        integer('ready_window', 1)
        number('divergence_factor', 1.0, lo_open=True)
        integer('seed', 0)
        integer('snapshot_every', 1)
        number('input_clip', 0.0, lo_open=True)
        number('loss_smoothing', 0.0, 1.0, lo_open=True)
        number('lr_restart_factor', 0.0)
        number('weight_ema_decay', 0.0, 1.0, hi_open=True)
        if 0.0 < self.lr_restart_factor <= 1.0:
            raise ConfigError(f'lr_restart_factor must be 0 (off) or > 1, got {self.lr_restart_factor}')
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (checkpoint-safe)."""
        d = dataclasses.asdict(self)
        d['model_options'] = dict(self.model_options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'LearnerConfig':
        """Build from a dict; unknown keys raise ConfigError naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f'unknown learner parameter(s) {unknown}; accepted: {sorted(names)}')
        return cls(**dict(d))


# ==================================================================================== replay
class ReplayBuffer:
    """FIFO of the newest ``recent_capacity`` windows + a reservoir of older ones (≤ ``capacity``).

    Windows evicted from the FIFO form a stream that is reservoir-sampled (Vitter's Algorithm R): after
    ``e`` evictions every evicted window is in the reservoir with the same probability
    ``min(1, R / e)``, so the reservoir is a uniform sample of the whole history, however long.
    Storage is float32 (training runs in float32 anyway) and preallocated; untouched pages cost no
    memory. Samples are stored *raw* (unscaled): the scalers keep changing, so scaling happens when a
    batch is drawn.
    """

    def __init__(self, capacity: int, recent_capacity: int, window: int, width: int, n_out: int,
                 seed: int = 0) -> None:
        if capacity < 1 or not 0 <= recent_capacity <= capacity:
            raise ConfigError(f'need capacity >= 1 and 0 <= recent_capacity <= capacity, got '
                              f'{capacity}, {recent_capacity}')
        self.capacity = int(capacity)
        self.recent_capacity = int(recent_capacity)
        self.reservoir_capacity = self.capacity - self.recent_capacity
        self.window, self.width, self.n_out = int(window), int(width), int(n_out)
        self.rng = np.random.default_rng(seed)
        shape = (self.window, self.width)
        self._rx = np.zeros((self.recent_capacity, *shape), dtype=np.float32)
        self._ry = np.zeros((self.recent_capacity, self.n_out), dtype=np.float32)
        self._sx = np.zeros((self.reservoir_capacity, *shape), dtype=np.float32)
        self._sy = np.zeros((self.reservoir_capacity, self.n_out), dtype=np.float32)
        self._r_head = 0       # index of the oldest FIFO entry once the FIFO is full
        self._r_size = 0
        self._s_size = 0
        self.evicted = 0       # windows that have left the FIFO (the reservoir's input stream)
        self.added = 0

    def __len__(self) -> int:
        return self._r_size + self._s_size

    @property
    def recent_size(self) -> int:
        return self._r_size

    @property
    def reservoir_size(self) -> int:
        return self._s_size

    def add(self, window: np.ndarray, tau: np.ndarray) -> None:
        """Append one (window (L, width), tau (n_out,)) sample; the caller has validated it."""
        self.added += 1
        if self.recent_capacity == 0:
            self._to_reservoir(window, tau)
            return
        if self._r_size < self.recent_capacity:
            i = (self._r_head + self._r_size) % self.recent_capacity
            self._r_size += 1
        else:
            i = self._r_head
            self._to_reservoir(self._rx[i], self._ry[i])   # copies before we overwrite slot i
            self._r_head = (self._r_head + 1) % self.recent_capacity
        self._rx[i] = window
        self._ry[i] = tau

    def _to_reservoir(self, window: np.ndarray, tau: np.ndarray) -> None:
        self.evicted += 1
        if self.reservoir_capacity == 0:
            return
        if self._s_size < self.reservoir_capacity:
            j = self._s_size
            self._s_size += 1
        else:
            j = int(self.rng.integers(0, self.evicted))
            if j >= self.reservoir_capacity:
                return
        self._sx[j] = window
        self._sy[j] = tau

    def sample(self, batch: int, recent_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """A batch (with replacement) of ``round(batch * recent_fraction)`` FIFO windows, rest reservoir.

        When one part is empty the whole batch comes from the other. Returns float32 copies
        ``X (batch, L, width)``, ``Y (batch, n_out)``. Raises ValueError when the buffer is empty.
        """
        if len(self) == 0:
            raise ValueError('cannot sample from an empty replay buffer')
        n_recent = int(round(batch * recent_fraction))
        if self._s_size == 0:
            n_recent = batch
        elif self._r_size == 0:
            n_recent = 0
        ri = self.rng.integers(0, self._r_size, n_recent) if n_recent else np.empty(0, np.int64)
        # FIFO draws are positions from the oldest entry, mapped to slots: the same draws pick the
        # same windows whatever the ring's rotation, so a buffer restored from a checkpoint (stored
        # oldest first, head 0) continues exactly like the one that was saved
        ri = (ri + self._r_head) % max(self.recent_capacity, 1)
        si = self.rng.integers(0, self._s_size, batch - n_recent) if batch - n_recent else \
            np.empty(0, np.int64)
        X = np.concatenate([self._rx[ri], self._sx[si]])
        Y = np.concatenate([self._ry[ri], self._sy[si]])
        return X, Y

    def recent(self) -> tuple[np.ndarray, np.ndarray]:
        """The FIFO contents, oldest first (copies)."""
        idx = (self._r_head + np.arange(self._r_size)) % max(self.recent_capacity, 1)
        return self._rx[idx], self._ry[idx]

    def reservoir(self) -> tuple[np.ndarray, np.ndarray]:
        """The reservoir contents in slot order (copies)."""
        return self._sx[:self._s_size].copy(), self._sy[:self._s_size].copy()

    def state_dict(self) -> dict[str, Any]:
        """Tensors + plain values only (``weights_only``-safe); the FIFO is stored oldest first."""
        rx, ry = self.recent()
        sx, sy = self.reservoir()
        return {
            'capacity': self.capacity, 'recent_capacity': self.recent_capacity,
            'window': self.window, 'width': self.width, 'n_out': self.n_out,
            'recent_x': torch.from_numpy(np.ascontiguousarray(rx)),
            'recent_y': torch.from_numpy(np.ascontiguousarray(ry)),
            'reservoir_x': torch.from_numpy(sx), 'reservoir_y': torch.from_numpy(sy),
            'evicted': self.evicted, 'added': self.added,
            'rng': _rng_state_to_plain(self.rng),
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Capacities may differ from the saved ones: then the stored
        windows are re-added (reservoir first, FIFO last, so the newest stay the newest)."""
        try:
            rx, ry = _np(d['recent_x']), _np(d['recent_y'])
            sx, sy = _np(d['reservoir_x']), _np(d['reservoir_y'])
            shape = (self.window, self.width)
            for name, a, tail in (('recent_x', rx, shape), ('reservoir_x', sx, shape),
                                  ('recent_y', ry, (self.n_out,)), ('reservoir_y', sy, (self.n_out,))):
                if a.ndim != len(tail) + 1 or tuple(a.shape[1:]) != tail:
                    raise ValueError(f'buffer {name} has shape {a.shape}, expected (k, *{tail})')
            if len(rx) != len(ry) or len(sx) != len(sy):
                raise ValueError('buffer windows and torques have different lengths')
            same = (int(d['capacity']) == self.capacity
                    and int(d['recent_capacity']) == self.recent_capacity)
            if same and len(rx) <= self.recent_capacity and len(sx) <= self.reservoir_capacity:
                self._r_head, self._r_size = 0, len(rx)
                self._rx[:len(rx)], self._ry[:len(ry)] = rx, ry
                self._s_size = len(sx)
                self._sx[:len(sx)], self._sy[:len(sy)] = sx, sy
                self.evicted, self.added = int(d['evicted']), int(d['added'])
                if 'rng' in d:
                    self.rng.bit_generator.state = _rng_state_from_plain(d['rng'])
            else:
                self._r_head = self._r_size = self._s_size = 0
                self.evicted = self.added = 0
                for x, y in zip(np.concatenate([sx, rx]), np.concatenate([sy, ry])):
                    self.add(x, y)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f'replay buffer state is invalid: {exc}') from exc


def _np(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().cpu().numpy()
    return np.asarray(t)


def _rng_state_to_plain(rng: np.random.Generator) -> dict[str, Any]:
    """numpy bit-generator state as str/int only (its 128-bit ints are stored as decimal strings)."""
    st = rng.bit_generator.state
    return {'bit_generator': st['bit_generator'],
            'state': {k: str(v) for k, v in st['state'].items()},
            'has_uint32': int(st.get('has_uint32', 0)), 'uinteger': int(st.get('uinteger', 0))}


def _rng_state_from_plain(d: Mapping[str, Any]) -> dict[str, Any]:
    return {'bit_generator': d['bit_generator'],
            'state': {k: int(v) for k, v in d['state'].items()},
            'has_uint32': int(d['has_uint32']), 'uinteger': int(d['uinteger'])}


# ==================================================================================== checkpoints
def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the target directory, fsync, then ``os.replace``
    (:func:`invdyn_ros.atomic.atomic_write` with ``durable=True``).

    A crash (or power loss) mid-write leaves either the old file or the new one, never a torn file.
    """
    atomic_write(path, lambda f: torch.save(obj, f), durable=True)


def load_checkpoint_dict(path: str | os.PathLike) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with every failure mapped to :class:`CheckpointError`.

    Where a checkpoint manifest lists the file (:mod:`invdyn_ros.checkpoints`), its sha256 is
    verified first: a file that does not match is refused (CheckpointError naming both)."""
    path = Path(path)
    source, _ = verified_file(path)   # the manifest's sha256, where one lists the file
    if not os.path.isfile(source):
        raise CheckpointError(f'checkpoint {path} does not exist (or is not a file)')
    try:
        ckpt = torch.load(source, map_location='cpu', weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
            KeyError, AttributeError, TypeError, IndexError) as exc:
        raise CheckpointError(f'checkpoint {path} is truncated, corrupt or not a torch checkpoint: '
                              f'{type(exc).__name__}: {exc}') from exc
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'checkpoint {path} does not hold a dict (got {type(ckpt).__name__})')
    version = ckpt.get('format_version')
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(f'checkpoint {path} has format_version {version!r}; this invdyn_ros '
                              f'({__version__}) reads version {CHECKPOINT_FORMAT_VERSION}')
    return ckpt


def _all_finite(state: Mapping[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


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
        """What a :class:`~invdyn_ros.predictor.Predictor` needs: model + scalers, CPU tensor copies."""
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
        """The checkpoint dict (plain types and tensors only)."""
        return {
            'format_version': CHECKPOINT_FORMAT_VERSION, 'invdyn_version': __version__,
            'kind': self.kind, 'n_joints': self.n_joints,
            'learner_config': self.config.to_dict(), 'model_config': self.model_config_dict(),
            'model': {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            'averaged_model': None if self._averaged is None else {
                k: v.detach().cpu().clone() for k, v in self._averaged.module.state_dict().items()},
            'optimizer': copy.deepcopy(self.optimizer.state_dict()),
            'scheduler': dict(self.scheduler.state_dict()),
            'in_scaler': self.in_scaler.state_dict(), 'out_scaler': self.out_scaler.state_dict(),
            'buffer': self.buffer.state_dict() if include_buffer else None,
            'counters': {'samples': self.samples, 'steps': self.steps, 'good_steps': self.good_steps,
                         'rollbacks': self.rollbacks, **self.counters},
            'loss': {'ema': self.loss_ema, 'last': self.last_loss,
                     'history': torch.tensor(list(self._loss_hist), dtype=torch.float64),
                     'credit': self._credit},
            # the ring of squared errors, its position and fill ('errors': their square roots,
            # for readers of checkpoints before 'squared_errors')
            'prequential': {'squared_errors': torch.from_numpy(self._recent.sq.copy()),
                            'errors': torch.from_numpy(np.sqrt(self._recent.sq)),
                            'pos': self._recent.pos, 'count': self._recent.count},
        }

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
        try:
            saved_n = int(ckpt['n_joints'])
            kind = ckpt['kind']
            saved_cfg = LearnerConfig.from_dict(ckpt['learner_config'])
            saved_model_cfg = dict(ckpt['model_config'])
        except (KeyError, TypeError, ValueError, ConfigError) as exc:
            raise CheckpointError(f'{source}: missing or invalid header field: {exc}') from exc
        if n_joints is not None and int(n_joints) != saved_n:
            raise CheckpointError(f'{source} is for {saved_n} joints, expected {n_joints}')
        if config is not None:
            try:
                expected_model = config_to_dict(make_config(config.model, saved_n,
                                                            **config.model_options))
            except ConfigError as exc:
                raise CheckpointError(f'{source}: expected config is invalid: {exc}') from exc
            if config.model != kind:
                raise CheckpointError(f'{source} holds a {kind!r} model, expected {config.model!r}')
            if expected_model != saved_model_cfg:
                raise CheckpointError(f'{source} model options {saved_model_cfg} differ from the '
                                      f'expected {expected_model}')
            if config.window != saved_cfg.window:
                raise CheckpointError(f'{source} was trained on windows of {saved_cfg.window}, '
                                      f'expected {config.window}')
            use_cfg = config
        else:
            use_cfg = saved_cfg
        try:
            learner = cls(saved_n, use_cfg)
            if config_to_dict(learner.model.config) != saved_model_cfg:
                raise CheckpointError(f'{source}: model config {saved_model_cfg} does not match the '
                                      f'learner config')
            if not _all_finite(ckpt['model']):
                raise CheckpointError(f'{source}: model weights contain NaN/Inf')
            learner.model.load_state_dict(ckpt['model'])
            if learner._averaged is not None:
                # the saved average, or (saved without averaging) the model: the average
                # continues from there instead of restarting from the first new step
                avg = ckpt.get('averaged_model')
                if avg is None or not _all_finite(avg):
                    avg = ckpt['model']
                learner._averaged.module.load_state_dict(avg)
                learner._averaged.n_averaged.fill_(1)
            learner.optimizer.load_state_dict(ckpt['optimizer'])
            if config is not None:   # new training parameters, the saved schedule position
                for g in learner.optimizer.param_groups:
                    g['weight_decay'] = config.weight_decay
            sched = dict(ckpt['scheduler'])
            if config is not None:
                sched.update(patience=config.plateau_patience, factor=config.plateau_factor,
                             min_lrs=[config.min_learning_rate] * len(learner.optimizer.param_groups))
            learner.scheduler.load_state_dict(sched)
            learner.in_scaler.load_state_dict(ckpt['in_scaler'])
            learner.out_scaler.load_state_dict(ckpt['out_scaler'])
            if ckpt.get('buffer') is not None:
                learner.buffer.load_state_dict(ckpt['buffer'])
            c = ckpt['counters']
            learner.samples, learner.steps = int(c['samples']), int(c['steps'])
            learner.good_steps, learner.rollbacks = int(c['good_steps']), int(c['rollbacks'])
            for k in learner.counters:
                learner.counters[k] = int(c.get(k, 0))
            loss = ckpt['loss']
            learner.loss_ema = None if loss['ema'] is None else float(loss['ema'])
            learner.last_loss = None if loss['last'] is None else float(loss['last'])
            learner._loss_hist.extend(float(v) for v in _np(loss['history']).reshape(-1))
            learner._credit = float(loss['credit'])
            pq = ckpt['prequential']
            squared = 'squared_errors' in pq
            learner._recent.load(_np(pq['squared_errors' if squared else 'errors']),
                                 int(pq['pos']), int(pq['count']), squared=squared)
            learner._take_snapshot()
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, ConfigError) as exc:
            raise CheckpointError(f'{source} is incompatible or damaged: {type(exc).__name__}: '
                                  f'{exc}') from exc
        return learner

    def __repr__(self) -> str:
        return (f'OnlineLearner(kind={self.kind!r}, n_joints={self.n_joints}, samples={self.samples}, '
                f'steps={self.steps})')
