"""trajectory_msgs/JointTrajectory <-> arrays, and the node's trajectory relay (imports no rclpy
node API, only message objects; the numerics are :mod:`invdyn_ros.pipeline.trajectory_feedforward`).

``invdyn_node`` subscribes ``~/trajectory_in`` and publishes ``~/trajectory_out`` (remap it to
joint_trajectory_controller's ``~/joint_trajectory``): the same message -- header, joint names,
points, times -- with every point's ``effort`` set to the learned feedforward. Before the model is
ready the message passes through unchanged (with a throttled warning); a malformed one is dropped
(throttled warning, counted).
"""
from __future__ import annotations

import array
import time
from typing import Any

import numpy as np

from invdyn_ros.pipeline.trajectory_feedforward import (AnnotatedTrajectory, TrajectoryError,
                                                        annotate_trajectory)

__all__ = ['TrajectoryRelay', 'fill_efforts', 'trajectory_arrays']

WARN_THROTTLE_S = 1.0


def _field(points: Any, attr: str, m: int, required: bool) -> np.ndarray | None:
    """(N, m) array of one per-point field; None when every point leaves it empty."""
    rows = [getattr(p, attr) for p in points]
    lengths = {len(r) for r in rows}
    if lengths == {0} and not required:
        return None
    if lengths != {m}:
        raise TrajectoryError(f'points[].{attr}: every point needs {m} values (one per joint) '
                              f'{"" if required else "or none "}(lengths {sorted(lengths)})')
    out = np.empty((len(rows), m))
    for i, r in enumerate(rows):
        out[i] = np.frombuffer(r) if isinstance(r, array.array) and r.typecode == 'd' else r
    return out


def trajectory_arrays(msg: Any) -> dict[str, Any]:
    """``annotate_trajectory``'s arguments from a JointTrajectory: ``joint_names``, ``times``
    (time_from_start, s), ``positions`` and optional ``velocities`` / ``accelerations`` /
    ``efforts`` (N, m). Raises TrajectoryError for a message without points or ragged fields."""
    names = list(msg.joint_names)
    points = msg.points
    if not points:
        raise TrajectoryError('the trajectory has no points')
    m = len(names)
    times = np.array([p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in points])
    return {'joint_names': names, 'times': times,
            'positions': _field(points, 'positions', m, True),
            'velocities': _field(points, 'velocities', m, False),
            'accelerations': _field(points, 'accelerations', m, False),
            'efforts': _field(points, 'effort', m, False)}


def fill_efforts(msg: Any, efforts: np.ndarray) -> Any:
    """Set every point's ``effort`` (in place) and return the message."""
    for p, row in zip(msg.points, np.asarray(efforts, dtype=np.float64)):
        p.effort = array.array('d', row.tobytes())
    return msg


class TrajectoryRelay:
    """What ``invdyn_node`` does with a JointTrajectory: :meth:`handle` returns the message to
    publish (annotated or, before ready, unchanged) or None (dropped). ``logger``: an rclpy
    logger (``warning(msg, throttle_duration_sec=...)``, ``info``) or None. ``prior``: a callable
    ``(q, qd, qdd) -> (N, n)`` for points outside the trained region; by default the pipeline's
    identified physics model when it has a prior (``prior: rnea``)."""

    def __init__(self, pipeline: Any, logger: Any = None, prior: Any = None) -> None:
        self.pipeline = pipeline
        self.logger = logger
        self.prior = prior
        self.counters = {'trajectories': 0, 'trajectories_annotated': 0,
                         'trajectories_passed_through': 0, 'trajectories_rejected': 0,
                         'trajectory_points_outside': 0}
        self.last_seconds = 0.0
        self.last_result: AnnotatedTrajectory | None = None

    def _warn(self, text: str) -> None:
        if self.logger is not None:
            self.logger.warning(text, throttle_duration_sec=WARN_THROTTLE_S)

    def handle(self, msg: Any) -> Any:
        c = self.counters
        c['trajectories'] += 1
        start = time.perf_counter()
        prior = self.prior
        if prior is None:          # the pipeline's identified model, where it has a prior
            physics = getattr(self.pipeline, 'physics', None)
            if physics is not None and getattr(self.pipeline, 'residual', None):
                prior = physics.prior.predict_many
        try:
            res = annotate_trajectory(self.pipeline, prior=prior, **trajectory_arrays(msg))
        except TrajectoryError as exc:
            c['trajectories_rejected'] += 1
            self._warn(f'trajectory dropped (not passed on): {exc}')
            return None
        self.last_result = res
        self.last_seconds = time.perf_counter() - start
        if not res.annotated:
            c['trajectories_passed_through'] += 1
            self._warn(f'trajectory of {len(res.times)} points passed through without '
                       f'feedforward: {res.reason}')
            return msg
        fill_efforts(msg, res.efforts)
        c['trajectories_annotated'] += 1
        c['trajectory_points_outside'] += res.n_outside
        if res.n_outside:
            where = np.flatnonzero(res.outside)
            self._warn(f'{res.n_outside} of {len(res.times)} trajectory points are outside the '
                       f'trained region (points {where[:10].tolist()}'
                       f'{" ..." if where.size > 10 else ""}): their effort is '
                       f'{"the prior" if res.prior_used else "zero"}')
        if self.logger is not None:
            self.logger.info(f'trajectory of {len(res.times)} points annotated in '
                             f'{1e3 * self.last_seconds:.1f} ms',
                             throttle_duration_sec=WARN_THROTTLE_S)
        return msg

    def diagnostics(self) -> list[tuple[str, Any]]:
        return list(self.counters.items()) + \
            [('trajectory_annotation_ms', round(1e3 * self.last_seconds, 2))]
