"""Joint-space PD control with an additive feedforward torque (pure numpy, no rclpy).

    tau = clip(kp (q_d - q) + kd (qd_d - qd) + tau_ff, -limits, limits)

Why the gains are deliberately modest: the demo shows what the feedforward buys. With stiff PD the
tracking error would be small regardless of the feedforward; with the default UR5 gains the PD
alone lags and sags under gravity by a visible amount, while with the ideal feedforward the
remaining error is only what the noise and the discrete-time loop leave (see ``UR5_KP``).
The damping follows ``kd = 2 zeta sqrt(kp m)`` per joint with ``m`` a typical diagonal of the mass
matrix, so each joint behaves like a (roughly) critically damped mass-spring; the products
``kd / m * dt`` stay well below 1, the limit for a stable explicit damping term at 500 Hz.
"""
from __future__ import annotations

import numpy as np

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.trajectory_feedforward import TrajectorySpline

#: Proportional gains for the UR5 (N m/rad): joint bandwidths of ~1.5-4 Hz.
UR5_KP = (300.0, 300.0, 150.0, 30.0, 30.0, 10.0)
#: Typical diagonal of the UR5 mass matrix (kg m^2) around the home pose, for the damping rule.
UR5_TYPICAL_INERTIA = (1.3, 2.6, 0.84, 0.24, 0.25, 0.017)


def critically_damped_kd(kp, inertia, zeta: float = 1.0) -> np.ndarray:
    """``kd = 2 zeta sqrt(kp m)``: the damping that makes ``m e'' + kd e' + kp e = 0`` critically
    damped (zeta = 1) for each joint."""
    kp, inertia = np.asarray(kp, dtype=float), np.asarray(inertia, dtype=float)
    return 2.0 * zeta * np.sqrt(kp * inertia)


def ur5_default_gains() -> tuple[np.ndarray, np.ndarray]:
    """``(kp, kd)`` tuned for the simulated UR5 at 500 Hz (critically damped on the typical
    inertia)."""
    kp = np.array(UR5_KP)
    return kp, critically_damped_kd(kp, UR5_TYPICAL_INERTIA)


class PDController:
    """PD + feedforward with the output clamped to the torque limits.

    ``compute`` raises ``ValueError`` for a state or reference of the wrong shape or with NaN/Inf
    (the caller must not command anything from a bad measurement); a *feedforward* with NaN/Inf or
    of the wrong shape is replaced by zero and counted in ``counters['rejected_feedforward']``,
    because it comes from a learned model the controller does not trust. The output is always
    finite and within ``torque_limits``.
    """

    def __init__(self, kp, kd, torque_limits) -> None:
        self.kp = self._gain('kp', kp)
        self.n = self.kp.size
        self.kd = self._gain('kd', kd)
        self.torque_limits = self._gain('torque_limits', torque_limits)
        if self.kd.size != self.n or self.torque_limits.size != self.n:
            raise ConfigError(f'kd, torque_limits: expected {self.n} values like kp, got '
                              f'{self.kd.size} and {self.torque_limits.size}')
        self.counters = {'commands': 0, 'rejected_feedforward': 0, 'clamped': 0}

    @staticmethod
    def _gain(name: str, value) -> np.ndarray:
        arr = np.asarray(value, dtype=float).reshape(-1)
        if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 0.0):
            raise ConfigError(f'{name}: must be a non-empty list of finite values >= 0, '
                              f'got {value!r}')
        return arr

    def _state(self, name: str, value) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        if arr.shape != (self.n,):
            raise ValueError(f'{name}: expected shape ({self.n},), got {arr.shape}')
        if not np.all(np.isfinite(arr)):
            raise ValueError(f'{name}: contains NaN or Inf')
        return arr

    def feedback(self, q_d, qd_d, q, qd) -> np.ndarray:
        """The PD term alone (unclamped)."""
        q_d, qd_d = self._state('q_d', q_d), self._state('qd_d', qd_d)
        q, qd = self._state('q', q), self._state('qd', qd)
        return self.kp * (q_d - q) + self.kd * (qd_d - qd)

    def compute(self, q_d, qd_d, q, qd, feedforward=None) -> np.ndarray:
        """The clamped torque command (N m) for the reference ``(q_d, qd_d)`` and the measured
        state ``(q, qd)``."""
        tau = self.feedback(q_d, qd_d, q, qd)
        if feedforward is not None:
            ff = np.asarray(feedforward, dtype=float)
            if ff.shape == (self.n,) and np.all(np.isfinite(ff)):
                tau = tau + ff
            else:
                self.counters['rejected_feedforward'] += 1
        clamped = np.clip(tau, -self.torque_limits, self.torque_limits)
        if np.any(clamped != tau):
            self.counters['clamped'] += 1
        self.counters['commands'] += 1
        return clamped


__all__ = ['PDController', 'critically_damped_kd', 'ur5_default_gains', 'UR5_KP',
           'UR5_TYPICAL_INERTIA']


def track(arm, trajectory, controller: PDController, duration_s: float, feedforward=None,
          lead_s: float = 0.0) -> dict[str, np.ndarray]:
    """Run the closed loop without ROS: at each period ``k`` measure, command, ``arm.step``.

    ``feedforward``: ``None`` (PD only), ``'ideal'`` (``arm.rnea`` on the reference: the ceiling)
    or a callable ``(t, q_d, qd_d, qdd_d) -> (n,)`` (e.g. a learned model). The reference is sampled
    at ``t_k + lead_s``; the command is held over ``[t_k, t_k + dt]``, so ``lead_s = dt / 2``
    centres the zero-order hold. Returns arrays ``t (N,)`` and ``q_d, q, qd, tau, tau_ff (N, n)``
    (``q`` and ``qd`` are the true, noise-free states at ``t`` before the step).
    """
    dt = arm.config.dt
    steps = int(round(duration_s / dt))
    n = arm.n
    out = {name: np.zeros((steps, n)) for name in ('q_d', 'q', 'qd', 'tau', 'tau_ff')}
    out['t'] = np.zeros(steps)
    for k in range(steps):
        t = arm.time
        q_d, qd_d, qdd_d = trajectory.sample(t + lead_s)
        q_m, qd_m, _ = arm.measure()
        if feedforward is None:
            ff = None
        elif isinstance(feedforward, str) and feedforward == 'ideal':
            ff = arm.rnea(q_d, qd_d, qdd_d)
        else:
            ff = feedforward(t, q_d, qd_d, qdd_d)
        tau = controller.compute(q_d, qd_d, q_m, qd_m, ff)
        q, qd = arm.true_state()
        out['t'][k], out['q_d'][k], out['q'][k], out['qd'][k] = t, q_d, q, qd
        out['tau'][k] = tau
        out['tau_ff'][k] = ff if ff is not None else 0.0
        arm.step(tau)
    return out


__all__ += ['track']


class TrajectoryFollower:
    """A joint_trajectory_controller-like consumer of a JointTrajectory whose points carry efforts.

    ``sample(t) -> (q_d, qd_d, qdd_d)`` is the desired motion through the points as JTC
    interpolates it (:class:`invdyn_ros.pipeline.trajectory_feedforward.TrajectorySpline`: quintic /
    cubic Hermite / cubic spline by what the points hold), so it can stand in for a reference in
    :func:`track`; ``effort(t) -> (n,)`` is the points' effort linearly interpolated at ``t`` (held
    before the first and after the last point), which JTC with an ``effort`` command interface
    adds to its PID output (``track(..., feedforward=follower.feedforward)``). ``times`` are
    ``time_from_start`` (s); arrays ``(N, n)`` in the controller's joint order.
    """

    def __init__(self, times, positions, velocities=None, accelerations=None,
                 efforts=None) -> None:
        self.times = np.asarray(times, dtype=float).reshape(-1)
        q = np.asarray(positions, dtype=float)
        if q.ndim != 2 or q.shape[0] != self.times.size or not np.isfinite(q).all() \
                or not np.isfinite(self.times).all() or np.any(np.diff(self.times) <= 0):
            raise ValueError('times / positions: need (N,) increasing times and (N, n) finite '
                             'positions')
        arrays = [None if a is None else np.asarray(a, dtype=float)
                  for a in (velocities, accelerations, efforts)]
        for name, a in zip(('velocities', 'accelerations', 'efforts'), arrays):
            if a is not None and (a.shape != q.shape or not np.isfinite(a).all()):
                raise ValueError(f'{name}: need shape {q.shape} and finite values')
        self.n = q.shape[1]
        self._spline = TrajectorySpline(self.times, q, arrays[0], arrays[1])
        self.efforts = arrays[2]

    def sample(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q, qd, qdd = self._spline.sample(np.array([float(t)]))
        return q[0], qd[0], qdd[0]

    def effort(self, t: float) -> np.ndarray:
        if self.efforts is None:
            return np.zeros(self.n)
        return np.array([np.interp(t, self.times, self.efforts[:, j]) for j in range(self.n)])

    def feedforward(self, t: float, *_reference) -> np.ndarray:
        """:func:`track`'s feedforward callable: the points' effort at ``t``."""
        return self.effort(t)


__all__ += ['TrajectoryFollower']
