"""The learner's hyper-parameters: :class:`LearnerConfig` (validation, plain-dict round trip).

Re-exported by :mod:`invdyn_ros.learning.learner`; see its docstring for why each parameter is what
it is.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from invdyn_ros.errors import ConfigError
from invdyn_ros.learning.models import MODEL_KINDS, make_config

__all__ = ['LearnerConfig']


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
