"""trajectory_msgs/JointTrajectory <-> arrays, and the node's trajectory relay (imports no rclpy
node API, only message objects; the numerics are :mod:`invdyn_ros.pipeline.trajectory_feedforward`).

``invdyn_node`` subscribes ``~/trajectory_in`` and publishes ``~/trajectory_out`` (remap it to
joint_trajectory_controller's ``~/joint_trajectory``): the same message -- header, joint names,
points, times -- with every point's ``effort`` set to the learned feedforward. Before the model is
ready the message passes through unchanged (with a throttled warning); a malformed one is dropped
(throttled warning, counted). With ``trajectory_max_point_dt`` > 0 points are inserted where the
plan's are further apart, on JTC's own spline through them (the motion unchanged,
``annotate_trajectory``): JTC interpolates the efforts linearly between points.

The annotation never runs in the control thread: :meth:`TrajectoryRelay.submit` freezes the
pipeline's prediction there (:class:`~invdyn_ros.pipeline.frozen.FrozenPipeline`, a few copies)
and the relay's own thread annotates and publishes, in the order the trajectories came. (In the
control thread, annotating the demo's 1127-point trajectory took 15 ms on a quiet machine and up
to 145 ms on a busy one, during which no joint state was processed.)
"""
from __future__ import annotations

import array
import collections
import threading
import time
from typing import Any, Callable

import numpy as np

from invdyn_ros.pipeline.frozen import FrozenPipeline
from invdyn_ros.pipeline.scheduling import normal_scheduling
from invdyn_ros.pipeline.trajectory_feedforward import (AnnotatedTrajectory, TrajectoryError,
                                                        annotate_trajectory)

__all__ = ['TrajectoryRelay', 'fill_efforts', 'insert_message_points', 'trajectory_arrays',
           'trajectory_message']

WARN_THROTTLE_S = 1.0
#: Trajectories waiting for the relay's thread; beyond it the oldest waiting one is dropped.
QUEUE_SIZE = 8


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


def trajectory_message(names: Any, times: Any, q: Any, qd: Any = None, qdd: Any = None,
                       stamp_ns: int = 0) -> Any:
    """A trajectory_msgs/JointTrajectory through the points: ``times`` (N,) time_from_start (s),
    ``q`` and optional ``qd``, ``qdd`` (N, n); None leaves that field empty in every point, as a
    planner that sends positions only does (:func:`trajectory_arrays` reads it back as None, and
    ``annotate_trajectory`` then takes them from its spline through the positions).
    ``header.stamp`` = ``stamp_ns`` (ns; 0: the controller starts the trajectory on arrival)."""
    from trajectory_msgs.msg import JointTrajectory

    msg = JointTrajectory()
    msg.joint_names = list(names)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.points = [_point(times[k], q[k], None if qd is None else qd[k],
                         None if qdd is None else qdd[k]) for k in range(len(times))]
    return msg


def _point(time_s: float, q: Any, qd: Any, qdd: Any) -> Any:
    from trajectory_msgs.msg import JointTrajectoryPoint

    p = JointTrajectoryPoint(positions=np.asarray(q, dtype=np.float64).tolist(),
                             velocities=[] if qd is None else np.asarray(qd).tolist(),
                             accelerations=[] if qdd is None else np.asarray(qdd).tolist())
    p.time_from_start.sec, p.time_from_start.nanosec = divmod(int(round(time_s * 1e9)),
                                                              1_000_000_000)
    return p


def insert_message_points(msg: Any, res: AnnotatedTrajectory) -> Any:
    """The points of ``res`` (``annotate_trajectory(..., max_point_dt=...)`` inserted some) in
    ``msg`` (in place): the original point objects kept as they are, the new ones built from the
    states ``res`` sampled (same fields as the originals: accelerations only where they had
    them). Efforts are :func:`fill_efforts`' job."""
    if not res.inserted:
        return msg
    positions, velocities, accelerations, is_new = res.points
    originals = iter(msg.points)
    msg.points = [_point(res.times[k], positions[k], velocities[k],
                         None if accelerations is None else accelerations[k])
                  if is_new[k] else next(originals) for k in range(len(res.times))]
    return msg


def fill_efforts(msg: Any, efforts: np.ndarray) -> Any:
    """Set every point's ``effort`` (in place) and return the message."""
    for p, row in zip(msg.points, np.asarray(efforts, dtype=np.float64)):
        p.effort = array.array('d', row.tobytes())
    return msg


class TrajectoryRelay:
    """What ``invdyn_node`` does with a JointTrajectory. ``logger``: an rclpy logger
    (``warning(msg, throttle_duration_sec=...)``, ``info``, ``error``) or None. ``prior``: a
    callable ``(q, qd, qdd) -> (N, n)`` for points outside the trained region; by default the
    model's identified physics (``prior: rnea``). ``publish``: where :meth:`submit` sends the
    results.

    :meth:`submit` (control thread) freezes the pipeline and queues the message; the relay's
    thread runs :meth:`handle` on it and publishes. :meth:`handle` alone is the synchronous
    form: the message to publish (annotated or, before ready, unchanged) or None (dropped).
    :meth:`close` stops the thread (waiting trajectories are dropped, counted)."""

    def __init__(self, pipeline: Any, logger: Any = None, prior: Any = None,
                 publish: Callable[[Any], Any] | None = None,
                 queue_size: int = QUEUE_SIZE, max_point_dt: float = 0.0) -> None:
        self.pipeline = pipeline
        self.max_point_dt = float(max_point_dt)
        self.logger = logger
        self.prior = prior
        self.publish = publish
        self.queue_size = int(queue_size)
        self.counters = {'trajectories': 0, 'trajectories_annotated': 0,
                         'trajectories_passed_through': 0, 'trajectories_rejected': 0,
                         'trajectories_dropped': 0, 'trajectories_failed': 0,
                         'trajectory_points_outside': 0, 'trajectory_points_inserted': 0}
        self.last_seconds = 0.0
        self.last_freeze_seconds = 0.0
        self.last_error: str | None = None
        self.last_result: AnnotatedTrajectory | None = None
        self._waiting: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def _warn(self, text: str) -> None:
        if self.logger is not None:
            self.logger.warning(text, throttle_duration_sec=WARN_THROTTLE_S)

    # ------------------------------------------------------------------ threaded
    def submit(self, msg: Any, annotate: bool = True) -> None:
        """Queue ``msg`` for the relay's thread (``annotate=False``: passed on unchanged, in
        order with the others). Called from the control thread; returns at once."""
        model = None
        if annotate:
            start = time.perf_counter()
            model = FrozenPipeline(self.pipeline)
            self.last_freeze_seconds = time.perf_counter() - start
        with self._cond:
            if self._closed:
                return
            if len(self._waiting) >= self.queue_size:
                self._waiting.popleft()
                self.counters['trajectories_dropped'] += 1
                self._warn(f'{self.queue_size} trajectories waiting for annotation: the oldest '
                           'was dropped (not passed on)')
            self._waiting.append((msg, model))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name='trajectory_relay',
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        normal_scheduling()                 # not the SCHED_FIFO of the control thread
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                msg, model = self._waiting.popleft()
            try:
                out = msg if model is None else self.handle(msg, model)
                if out is not None and self.publish is not None:
                    self.publish(out)
            except Exception as exc:  # noqa: BLE001 - the thread must go on with the next one
                self.counters['trajectories_failed'] += 1
                self.last_error = f'{type(exc).__name__}: {exc}'
                if self.logger is not None:
                    self.logger.error(f'trajectory not passed on: {self.last_error}',
                                      throttle_duration_sec=WARN_THROTTLE_S)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop the thread after the trajectory it is on; the waiting ones are dropped (counted).
        True when the thread ended within ``timeout`` s (or never started). Idempotent."""
        with self._cond:
            self._closed = True
            self.counters['trajectories_dropped'] += len(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------ one trajectory
    def handle(self, msg: Any, model: Any = None) -> Any:
        """Annotate ``msg`` (in place) with ``model`` (a :class:`FrozenPipeline`; default the
        live pipeline: only from the control thread)."""
        c = self.counters
        c['trajectories'] += 1
        start = time.perf_counter()
        model = self.pipeline if model is None else model
        prior = self.prior
        if prior is None and model.physics is not None and model.residual:
            prior = model.physics.prior.predict_many     # the identified physics model
        try:
            res = annotate_trajectory(model, prior=prior, max_point_dt=self.max_point_dt,
                                      **trajectory_arrays(msg))
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
        if res.warning:
            self._warn(f'trajectory of {len(res.times)} points: {res.warning}')
        fill_efforts(insert_message_points(msg, res), res.efforts)
        c['trajectories_annotated'] += 1
        c['trajectory_points_outside'] += res.n_outside
        c['trajectory_points_inserted'] += res.inserted
        if res.n_outside:
            where = np.flatnonzero(res.outside)
            self._warn(f'{res.n_outside} of {len(res.times)} trajectory points are outside the '
                       f'trained region (points {where[:10].tolist()}'
                       f'{" ..." if where.size > 10 else ""}): their effort is '
                       f'{"the prior" if res.prior_used else "zero"}')
        if self.logger is not None:
            added = f' ({res.inserted} inserted)' if res.inserted else ''
            self.logger.info(f'trajectory of {len(res.times)} points{added} annotated in '
                             f'{1e3 * self.last_seconds:.1f} ms',
                             throttle_duration_sec=WARN_THROTTLE_S)
        return msg

    def diagnostics(self) -> list[tuple[str, Any]]:
        out = list(self.counters.items()) + \
            [('trajectory_annotation_ms', round(1e3 * self.last_seconds, 2)),
             ('trajectory_freeze_ms', round(1e3 * self.last_freeze_seconds, 3))]
        if self.last_error is not None:
            out.append(('trajectory_last_error', self.last_error))
        return out
