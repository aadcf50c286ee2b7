"""What a pipeline predicts with, frozen: for work that runs beside the control thread.

The control thread changes a :class:`~invdyn_ros.pipeline.pipeline.Pipeline` in place at every
sample: weights load into the predictors' modules, the identification moves the prior's
parameters, the visited region, the residual gate and the identifier's statistics change. Work in
another thread -- the node's trajectory annotation (``ros.trajectory_msgs_io``) -- must not read
them meanwhile. :class:`FrozenPipeline` copies them once, in the control thread (a few deep copies
of small arrays and modules; ``bench/trajectory_feedforward.py --timing-only`` prints the cost),
into an object with the attributes that
:func:`~invdyn_ros.pipeline.trajectory_feedforward.annotate_trajectory` reads. It shares nothing
the pipeline changes later; the config and the robot model are never changed.
"""
from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

__all__ = ['FrozenPipeline']


class FrozenPipeline:
    """A pipeline's prediction as it is now (module docstring): ``config``, ``n``, ``window``,
    ``names``, ``dual``, ``residual``, ``ready``, ``estimator.rate_hz``, ``predictors``,
    ``identifier``, ``physics`` -- the same names as on the pipeline.

    Of a pipeline that is not ready nothing is copied (``predictors`` empty, ``identifier`` and
    ``physics`` None): ``annotate_trajectory`` only checks the trajectory against the config and
    passes it through unchanged then, so the control thread does not pay the copies (about 1 ms)
    for a trajectory that gets no efforts."""

    def __init__(self, pipeline: Any) -> None:
        # (no import of the pipeline's modules here: the trajectory relay imports this module
        # in processes that have no torch, such as the demo's controller)
        self.BATCH_CHUNK = pipeline.BATCH_CHUNK
        self._predict_windows = pipeline._predict_windows
        self.config = pipeline.config
        self.n, self.window = pipeline.n, pipeline.window
        self.names, self.dual, self.residual = pipeline.names, pipeline.dual, pipeline.residual
        self.ready = bool(pipeline.ready)
        self.estimator = SimpleNamespace(rate_hz=pipeline.estimator.rate_hz)
        if not self.ready:
            self.predictors, self.identifier, self.physics = {}, None, None
            return
        self.predictors = {name: p.frozen() for name, p in pipeline.predictors.items()}
        self.identifier = copy.deepcopy(pipeline.identifier)
        physics = pipeline.physics
        self.physics = physics.frozen() if physics is not None else None
