"""Learned feedforward for a whole planned trajectory: the ``effort`` of each JointTrajectory point.

ros2_controllers' ``joint_trajectory_controller`` (JTC) with an ``effort`` command interface adds
the ``effort`` of the trajectory (interpolated between points) to its PID output as a feedforward
(ros2_controllers PR #1200). A planned trajectory is known ahead, so its feedforward is computed
here once for all points, with no 1 kHz topic loop. ROS-free; ``trajectory_msgs_io`` converts
messages, the node only wires topics.

What a point's effort is: the pipeline's networks' prediction for the *desired* states, exactly as
they were trained -- on a window of ``window`` consecutive feature rows ``[q, qd, qdd]`` sampled
at the pipeline's rate ``rate_hz``. The trajectory is therefore turned into a continuous desired
motion first (:class:`TrajectorySpline`, the interpolation JTC itself uses: quintic through
positions, velocities and accelerations; cubic Hermite when accelerations are absent; when
velocities are absent too, the C2 cubic spline through the positions at rest at both ends -- what
JTC's ``positions_upsampling`` builds (Rolling, 2026; without it JTC joins positions linearly,
whose velocity steps have no finite acceleration to predict from) -- with velocities and
accelerations its derivatives), resampled at ``1 / rate_hz``, and the networks run on the
resampled windows of that sequence that end at each point's time
(``t_i - (L-1)/rate, ..., t_i``): the read-out at the point's time is exact (no interpolation of
outputs), and it is the value the streaming predictor would give at ``t_i`` for a grid through
``t_i`` (tested against a direct ``predict_many`` over the grid). Before the first point the
desired state is held at the first point's (a planned trajectory starts at rest). All windows go
through one batched ``Predictor.predict_many`` per network (chunks of
``Pipeline.BATCH_CHUNK``).

Per-joint network choice: the dual identifier's current one (``Pipeline.identifier.active``, as
``predict_reference``); a network with a non-finite output never hides the other's finite one.

Outside the trained region: a point whose window has a feature farther than ``max_std`` standard
deviations from the mean of the networks' input scaler (the running statistics of everything the
networks were trained on) gets the ``prior``'s torque (a callable ``prior(q, qd, qdd) -> (N, n)``,
e.g. a physics model) or zero, and is reported in ``AnnotatedTrajectory.outside``. So are points
whose prediction is not finite. All efforts are clamped to ``torque_limits`` and finite.

Until the pipeline is ``ready`` (and while its sample rate is unknown) a valid trajectory passes
through unchanged (``annotated=False`` with the reason). Invalid input (NaN/Inf, ragged arrays,
times not strictly increasing, a configured joint missing, duplicate names, magnitudes beyond the
estimator's limits) raises :class:`TrajectoryError` (a ``ValueError``) naming the problem.

Joint order is by name: the trajectory may list the joints in any order and may hold extra joints,
whose efforts are kept as given (zero when the trajectory has none).

Inserted points (``max_point_dt``): JTC interpolates the point efforts linearly, so between points
far apart the feedforward is a chord of the dynamics (``bench/trajectory_feedforward.py``: points
every 100 ms, as MoveIt's time parametrization resamples by default, tracked 1.8x worse than the
per-sample feedforward; every 20 ms 1.0x). With ``max_point_dt > 0`` every gap between
points longer than that gets evenly spaced points inserted, sampled from the very spline JTC builds
through the original points (:func:`insert_points`): a quintic or cubic segment restricted to a
sub-interval is the quintic / cubic through its end states, so JTC's motion is unchanged (to
rounding) and only the efforts get denser. Only where the points carry velocities: with positions
alone JTC interpolates linearly, and points on a curve would change the motion.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy.interpolate import CubicHermiteSpline, CubicSpline, PPoly

from invdyn_ros.errors import InvdynError

__all__ = ['AnnotatedTrajectory', 'DEFAULT_MAX_STD', 'MAX_POINTS', 'TrajectoryError',
           'TrajectorySpline', 'annotate_trajectory', 'insert_points', 'order_joints',
           'pipeline_rate_hz', 'window_times']

#: A window feature farther than this many input-scaler standard deviations from the training
#: mean marks the point as outside the trained region.
DEFAULT_MAX_STD = 3.0

#: Points are inserted only while the trajectory stays within this many points (a plan with
#: seconds between points and a small ``max_point_dt`` would otherwise grow without bound).
MAX_POINTS = 20000

Prior = Callable[[np.ndarray, np.ndarray, np.ndarray], Any]


class TrajectoryError(InvdynError, ValueError):
    """A trajectory that cannot be annotated (the message says why)."""


@dataclass(frozen=True)
class AnnotatedTrajectory:
    """The result of :func:`annotate_trajectory`.

    ``efforts`` (N, m) in the trajectory's own joint order (``joint_names``); when ``annotated``
    is False it is the input's efforts (None if it had none) and ``reason`` says why.
    ``outside`` (N,) bool: points that got the prior's torque or zero instead of the networks'
    (outside the trained region or a non-finite prediction). ``q, qd, qdd`` (N, n): the desired
    states at the points in the pipeline's joint order (None when not annotated).
    ``inserted``: points inserted (``max_point_dt``); then ``times`` and ``efforts`` are of all
    points and ``points`` holds their ``(positions, velocities, accelerations, is_inserted)``:
    (N, m) in the trajectory's joint order (accelerations None where the input had none) and the
    (N,) mask of the new points, for the message.
    ``warning``: something the caller should log (points that were not inserted, and why)."""
    joint_names: tuple[str, ...]
    times: np.ndarray
    efforts: np.ndarray | None
    annotated: bool
    reason: str
    outside: np.ndarray
    prior_used: bool = False
    rate_hz: float | None = None
    q: np.ndarray | None = None
    qd: np.ndarray | None = None
    qdd: np.ndarray | None = None
    inserted: int = 0
    points: tuple | None = None
    warning: str = ''

    @property
    def n_outside(self) -> int:
        return int(np.count_nonzero(self.outside))


# ============================================================================ input handling
def _matrix(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrajectoryError(f'{name}: not a numeric array ({exc})') from None
    if a.shape != shape:
        raise TrajectoryError(f'{name}: expected shape {shape}, got {a.shape}')
    if not np.isfinite(a).all():
        raise TrajectoryError(f'{name}: contains NaN or Inf')
    return a


def _times(times: Any) -> np.ndarray:
    try:
        t = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TrajectoryError(f'times: not a numeric array ({exc})') from None
    if t.ndim != 1 or t.size == 0:
        raise TrajectoryError(f'times: expected a non-empty 1-D array, got shape {t.shape}')
    if not np.isfinite(t).all():
        raise TrajectoryError('times: contain NaN or Inf')
    if t.size > 1 and not (np.diff(t) > 0).all():
        raise TrajectoryError('times: must be strictly increasing (time_from_start)')
    return t


def order_joints(configured: Sequence[str], names: Sequence[str]) -> np.ndarray:
    """Indices into ``names`` of each ``configured`` joint; TrajectoryError naming the missing
    joints, or on duplicate names."""
    names = list(names)
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise TrajectoryError(f'joint_names: duplicate names {dup}')
    missing = [j for j in configured if j not in names]
    if missing:
        raise TrajectoryError(f'joint_names: configured joint(s) {missing} missing from the '
                              f'trajectory (it has {names})')
    return np.array([names.index(j) for j in configured], dtype=np.intp)


class TrajectorySpline:
    """The desired motion through the points, as JTC interpolates it (module docstring).

    ``sample(t) -> (q, qd, qdd)``, each ``(len(t), n)``; before the first point the first point's
    state is held, after the last point the last one's. Arrays must be validated (finite)."""

    def __init__(self, times: np.ndarray, q: np.ndarray, qd: np.ndarray | None = None,
                 qdd: np.ndarray | None = None) -> None:
        self.t0, self.t1 = float(times[0]), float(times[-1])
        n = q.shape[1]
        if times.size == 1:
            self._const = (q[0], qd[0] if qd is not None else np.zeros(n),
                           qdd[0] if qdd is not None else np.zeros(n))
            return
        self._const = None
        if qd is not None and qdd is not None:
            p = _quintic_hermite(times, q, qd, qdd)
        elif qd is not None:
            p = CubicHermiteSpline(times, q, qd, axis=0)
        else:
            # JTC's positions_upsampling: a global C2 cubic with v = 0 at both ends
            p = CubicSpline(times, q, axis=0, bc_type='clamped')
        self._p = (p, p.derivative(1), p.derivative(2))
        ends = [(f(self.t0), f(self.t1)) for f in self._p]
        self._first = tuple(e[0] for e in ends)
        self._last = tuple(e[1] for e in ends)

    def sample(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if self._const is not None:
            return tuple(np.broadcast_to(c, (t.size, c.size)).copy() for c in self._const)
        tc = np.clip(t, self.t0, self.t1)
        out = [f(tc) for f in self._p]
        before, after = t < self.t0, t > self.t1
        for k in range(3):
            if before.any():
                out[k][before] = self._first[k]
            if after.any():
                out[k][after] = self._last[k]
        return out[0], out[1], out[2]


def _quintic_hermite(t: np.ndarray, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> PPoly:
    """The piecewise quintic through positions, velocities and accelerations at the points (what
    ``BPoly.from_derivatives`` builds, vectorized: that one loops over the intervals in Python,
    ~0.3 s for 1000 points)."""
    h = np.diff(t)[:, None]
    p0, p1, v0, v1, a0, a1 = q[:-1], q[1:], qd[:-1], qd[1:], qdd[:-1], qdd[1:]
    dp = p1 - p0
    c3 = (20 * dp - (8 * v1 + 12 * v0) * h - (3 * a0 - a1) * h ** 2) / (2 * h ** 3)
    c4 = (-30 * dp + (14 * v1 + 16 * v0) * h + (3 * a0 - 2 * a1) * h ** 2) / (2 * h ** 4)
    c5 = (12 * dp - 6 * (v1 + v0) * h - (a0 - a1) * h ** 2) / (2 * h ** 5)
    return PPoly(np.stack([c5, c4, c3, 0.5 * a0, v0, p0]), t)


def insert_points(times: np.ndarray, positions: np.ndarray, velocities: np.ndarray,
                  accelerations: np.ndarray | None, efforts: np.ndarray | None,
                  max_point_dt: float) -> tuple[np.ndarray, ...]:
    """Evenly spaced points inserted into every gap longer than ``max_point_dt`` (module
    docstring): ``(times, positions, velocities, accelerations, efforts, inserted)`` with
    ``inserted`` (N,) True at the new points; the original points kept bit for bit. The new
    points' states come from the spline JTC builds through the original points (quintic with
    accelerations, cubic Hermite without); their ``efforts`` (extra joints keep theirs) are the
    linear interpolation JTC would apply anyway. Validated arrays, ``velocities`` required."""
    h = np.diff(times)
    # a gap within 1 µs of max_point_dt is not longer than it: time_from_start is rounded to
    # nanoseconds, so a plan with points exactly max_point_dt apart gets none inserted
    parts = np.maximum(1, np.ceil((h - 1e-6) / max_point_dt).astype(np.int64))
    if not (parts > 1).any():
        return (times, positions, velocities, accelerations, efforts,
                np.zeros(times.size, dtype=bool))
    seg = np.repeat(np.arange(h.size), parts)                 # segment of each point but the last
    step = np.arange(seg.size) - np.repeat(np.cumsum(parts) - parts, parts)
    out_t = np.append(times[seg] + h[seg] * step / parts[seg], times[-1])
    new = np.append(step > 0, False)                          # the inserted ones
    out_t[~new] = times                                       # originals exactly
    spline = TrajectorySpline(times, positions, velocities, accelerations)
    sq, sqd, sqdd = spline.sample(out_t[new])

    def merged(original: np.ndarray, sampled: np.ndarray) -> np.ndarray:
        out = np.empty((out_t.size, original.shape[1]))
        out[~new], out[new] = original, sampled
        return out

    eff = None
    if efforts is not None:
        eff = np.column_stack([np.interp(out_t, times, efforts[:, j])
                               for j in range(efforts.shape[1])])
        eff[~new] = efforts
    return (out_t, merged(positions, sq), merged(velocities, sqd),
            None if accelerations is None else merged(accelerations, sqdd), eff, new)


def window_times(times: np.ndarray, window: int, rate_hz: float) -> np.ndarray:
    """``(N, L)`` sample times of the resampled window ending at each point (oldest first)."""
    offsets = (np.arange(window) - (window - 1)) / float(rate_hz)
    return times[:, None] + offsets[None, :]


def pipeline_rate_hz(pipeline: Any) -> float | None:
    """The pipeline's sample rate: the estimator's (measured or configured), else None."""
    rate = getattr(pipeline.estimator, 'rate_hz', None) or pipeline.config.filter.rate_hz
    return float(rate) if rate and math.isfinite(rate) and rate > 0 else None


# ============================================================================ the annotation
def annotate_trajectory(pipeline: Any, joint_names: Sequence[str], times: Any, positions: Any,
                        velocities: Any = None, accelerations: Any = None, efforts: Any = None,
                        *, prior: Prior | None = None, rate_hz: float | None = None,
                        max_std: float = DEFAULT_MAX_STD, require_ready: bool = True,
                        max_point_dt: float = 0.0) -> AnnotatedTrajectory:
    """The learned feedforward of every point (module docstring).

    ``joint_names`` (m,) the trajectory's joints, any order, a superset of the pipeline's;
    ``times`` (N,) s (``time_from_start``), strictly increasing; ``positions`` (N, m);
    ``velocities`` / ``accelerations`` / ``efforts`` (N, m) or None (empty). ``rate_hz``: the
    resampling rate (default: the pipeline's). ``require_ready=False`` annotates an unready
    pipeline too (offline use; the result's reason says so). ``max_point_dt`` > 0 (s): points
    inserted where the trajectory's are further apart (module docstring; only once annotated).
    Raises :class:`TrajectoryError`.
    """
    if not (math.isfinite(max_point_dt) and max_point_dt >= 0):
        raise TrajectoryError(f'max_point_dt: must be a finite number >= 0, got {max_point_dt!r}')
    names = tuple(str(x) for x in joint_names)
    t = _times(times)
    N, m = t.size, len(names)
    pos = _matrix('positions', positions, (N, m))
    vel = None if _empty(velocities) else _matrix('velocities', velocities, (N, m))
    acc = None if _empty(accelerations) else _matrix('accelerations', accelerations, (N, m))
    eff = None if _empty(efforts) else _matrix('efforts', efforts, (N, m))
    if acc is not None and vel is None:
        raise TrajectoryError('accelerations given without velocities')
    idx = order_joints(pipeline.config.joint_names, names)
    f = pipeline.config.filter
    if np.abs(pos).max() > f.max_abs_position:
        raise TrajectoryError(f'positions: |value| beyond max_abs_position {f.max_abs_position}')
    if vel is not None and np.abs(vel).max() > f.max_abs_velocity:
        raise TrajectoryError(f'velocities: |value| beyond max_abs_velocity {f.max_abs_velocity}')
    none = np.zeros(N, dtype=bool)

    def unchanged(reason: str) -> AnnotatedTrajectory:
        return AnnotatedTrajectory(names, t, eff, False, reason, none)

    if not pipeline.ready and require_ready:
        return unchanged('model not ready')
    rate = float(rate_hz) if rate_hz is not None else pipeline_rate_hz(pipeline)
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return unchanged('sample rate unknown (no joint states yet and rate_hz not set)')

    inserted, warning = 0, ''
    if max_point_dt > 0 and N > 1:
        if vel is None:
            warning = ('no points inserted (max_point_dt): the points have no velocities, and '
                       'JTC interpolates positions alone linearly')
        elif (t[-1] - t[0]) / max_point_dt + N > MAX_POINTS:
            warning = (f'no points inserted (max_point_dt {max_point_dt} s): the trajectory '
                       f'would exceed {MAX_POINTS} points')
        else:
            t, pos, vel, acc, eff, new = insert_points(t, pos, vel, acc, eff, max_point_dt)
            N, inserted = t.size, int(new.sum())
    q, qd, qdd = pos[:, idx], None if vel is None else vel[:, idx], \
        None if acc is None else acc[:, idx]
    spline = TrajectorySpline(t, q, qd, qdd)
    L, n = pipeline.window, len(idx)
    tw = window_times(t, L, rate)                        # (N, L)
    wq, wqd, wqdd = spline.sample(tw.reshape(-1))
    windows = np.concatenate((wq, wqd, wqdd), axis=1).reshape(N, L, 3 * n)
    torque, outside = _predict(pipeline, windows, max_std)
    q_pt, qd_pt, qdd_pt = windows[:, -1, :n], windows[:, -1, n:2 * n], windows[:, -1, 2 * n:]
    fallback = np.zeros((N, n))
    prior_used = False
    if prior is not None and outside.any():
        try:
            p = np.asarray(prior(q_pt[outside], qd_pt[outside], qdd_pt[outside]),
                           dtype=np.float64)
        except Exception:  # noqa: BLE001 - a failing prior means zero, never a lost trajectory
            p = None
        if p is not None and p.shape == (int(outside.sum()), n) and np.isfinite(p).all():
            fallback[outside] = p
            prior_used = True
    torque[outside] = fallback[outside]
    limits = pipeline.config.torque_limits
    if limits is not None:
        lim = np.asarray(limits, dtype=np.float64)
        np.clip(torque, -lim, lim, out=torque)
    torque[~np.isfinite(torque)] = 0.0                   # cannot happen; never pass one on
    out = eff.copy() if eff is not None else np.zeros((N, m))
    out[:, idx] = torque
    reason = 'annotated' if pipeline.ready else 'annotated (model not ready)'
    return AnnotatedTrajectory(names, t, out, True, reason, outside, prior_used, rate,
                               q_pt.copy(), qd_pt.copy(), qdd_pt.copy(), inserted,
                               (pos, vel, acc, new) if inserted else None, warning)


def _empty(x: Any) -> bool:
    return x is None or (hasattr(x, '__len__') and len(x) == 0) or np.size(x) == 0


def _predict(pipeline: Any, windows: np.ndarray, max_std: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """Selected torque (N, n) and the outside mask (N,) for raw windows (N, L, 3n).

    Only the networks that some joint uses run over all windows (like ``process``'s fast path);
    the other one only over the windows where a chosen prediction is not finite (the fallback of
    ``DualIdentifier.select``)."""
    N = windows.shape[0]
    n = pipeline.n
    names = list(pipeline.names)
    nets = [names[0], names[-1]] if pipeline.dual else [names[0]]
    chunk = getattr(pipeline, 'BATCH_CHUNK', 4096)
    outside = np.zeros(N, dtype=bool)
    for name in nets:
        sc = pipeline.predictors[name].in_scaler
        z = np.abs(windows - sc.mean) / sc.std              # (N, L, 3n)
        outside |= (z > max_std).any(axis=(1, 2))

    def run(name: str, rows: np.ndarray) -> np.ndarray:
        predictor = pipeline.predictors[name]
        y = np.empty((rows.size, n))
        for s in range(0, rows.size, chunk):
            y[s:s + chunk] = pipeline._predict_windows(predictor, windows[rows[s:s + chunk]])
        if name == getattr(pipeline, 'residual', None):   # physics prior + trusted residual
            last = windows[rows, -1]
            tp, trust, _ = pipeline.physics.predict_many(last[:, :n], last[:, n:2 * n],
                                                         last[:, 2 * n:])
            y = pipeline.physics.combine_many(tp, trust, y)
        return y

    every = np.arange(N)
    ident = pipeline.identifier           # the switching rule: DualIdentifier.select_many
    needed = ident.needed if pipeline.dual else (0,)
    preds = [np.full((N, n), np.nan) for _ in nets]
    for k in needed:
        preds[k][:] = run(nets[k], every)
    torque = ident.select_many(*preds).torque
    bad = np.flatnonzero(~np.isfinite(torque).all(axis=1))
    if pipeline.dual and bad.size and len(needed) == 1:
        other = 1 - needed[0]                # the unused network where a chosen one failed
        preds[other][bad] = run(nets[other], bad)
        torque = ident.select_many(*preds).torque
    outside |= ~np.isfinite(torque).all(axis=1)
    return torque, outside
