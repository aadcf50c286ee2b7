"""The pipeline's reference path: the torque for a *desired* state (the feedforward for a planner's
or a controller's reference), beside the measured stream.

:class:`ReferencePath` feeds its own streaming predictors (one per network, loaded with the same
weights as the measured stream's) with the stream of references, so a feedforward for a reference
trajectory never mixes desired and measured states in one window. What it shares with the measured
stream: the weights, the per-joint network choice (the measured stream's
:class:`~invdyn_ros.stages.identifier.DualIdentifier`; a reference has no measured torque to score),
the physics prior (``prior + trust * residual`` for the residual network, ``PriorSide.evaluate``),
the magnitude limits of the estimator's ``FilterConfig`` and the torque limits. It counts into the
pipeline's ``counters`` (``references``, ``rejected_references``, ``reference_outputs``,
``reference_restarts``, ``dropped_nonfinite``). ROS-free; not thread-safe.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.pipeline.config import PipelineConfig
from invdyn_ros.pipeline.pipeline_physics import PriorSide
from invdyn_ros.stages.identifier import DualIdentifier

__all__ = ['ReferencePath']


class ReferencePath:
    """Torques for desired states (module docstring); ``predictors``: its streaming predictors,
    by network name."""

    def __init__(self, config: PipelineConfig, identifier: DualIdentifier, prior: PriorSide,
                 limits: np.ndarray, counters: dict[str, int]) -> None:
        self.names = config.network_names
        self.predictors = {name: Predictor(cfg.model, config.n_joints, cfg.model_options,
                                           config.learner.window)
                           for name, cfg in config.networks()}
        self._n = config.n_joints
        self._filter = config.filter
        self._identifier = identifier
        self._prior = prior
        self._limits = limits
        self._counters = counters
        self._last_stamp = -math.inf

    def predict(self, q: Any, qd: Any, qdd: Any, stamp: float | None = None
                ) -> np.ndarray | None:
        """Torque (n,) for a desired state (``Pipeline.predict_reference``).

        ``stamp`` (s, any clock): a gap longer than the filter's ``max_gap_s`` since the previous
        reference restarts the window. Returns None while the window fills up or for an invalid
        reference (wrong length, NaN/Inf, beyond the estimator's magnitude limits; counted).
        """
        c = self._counters
        c['references'] += 1
        n = self._n
        try:
            arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (q, qd, qdd)]
        except (TypeError, ValueError):
            c['rejected_references'] += 1
            return None
        f = self._filter
        if any(a.shape != (n,) for a in arrays) or not all(np.isfinite(a).all() for a in arrays) \
                or np.abs(arrays[0]).max() > f.max_abs_position \
                or np.abs(arrays[1]).max() > f.max_abs_velocity:
            c['rejected_references'] += 1
            return None
        if stamp is not None:
            if not math.isfinite(stamp) or stamp - self._last_stamp > f.max_gap_s \
                    or stamp < self._last_stamp:
                if math.isfinite(self._last_stamp):
                    c['reference_restarts'] += 1      # a gap: the window fills up again
                for p in self.predictors.values():
                    p.reset_stream()
            self._last_stamp = float(stamp)
        row = np.concatenate(arrays)
        preds = [self.predictors[name].push(row) for name in self.names]
        if self._prior.residual is not None:      # names[0]: prior + trusted residual
            preds[0] = self._prior.evaluate(*arrays, preds[0])
        sel = self._identifier.select_from(preds)
        if sel is None:
            return None
        torque = np.clip(sel.torque, -self._limits, self._limits)
        if not np.isfinite(torque).all():
            c['dropped_nonfinite'] += 1
            return None
        c['reference_outputs'] += 1
        return torque
