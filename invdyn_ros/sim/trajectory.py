"""A persistently exciting reference trajectory: a finite Fourier series per joint (Swevers et al.).

Why: learning inverse dynamics needs data that excites all joints over a band of frequencies at
once; a sum of harmonics of one base frequency ``w_f`` is periodic (repeatable, so errors can be
compared period to period), band-limited (smooth torques) and has analytic derivatives:

    q_i(t)   = c_i + sum_k  a_ik/(w_f k) sin(w_f k t) - b_ik/(w_f k) cos(w_f k t)
    qd_i(t)  =       sum_k  a_ik cos(w_f k t) + b_ik sin(w_f k t)
    qdd_i(t) =       sum_k -a_ik w_f k sin(w_f k t) + b_ik w_f k cos(w_f k t)

The coefficients come from a seeded RNG and are then scaled per joint (one factor for all its
harmonics, so the spectrum shape is kept) so that over a whole period the excursion from the
centre ``c`` stays inside the joint limits minus ``margin`` (and below ``max_amplitude``), and
``|qd| <= max_velocity`` and ``|qdd| <= max_acceleration``. The peaks are evaluated on a dense grid
of one period (64 samples per period of the highest harmonic) and a 2 % safety factor covers the
grid's sampling error.

Ramp-in: the arm starts at rest at ``start``; the reference is the blend
``start + s(t) (f(t) - start)`` with the quintic smoothstep ``s`` (s, s', s'' are 0 at t=0 and s=1,
s'=s''=0 at the end), so position, velocity and acceleration are continuous and start at
(start, 0, 0). The blend is a convex combination of two in-limit positions, so it stays in the
limits; the ramp is lengthened (doubled) until the blended velocity/acceleration bounds hold too.

Switching references while moving (:class:`SwitchedTrajectory`): the same quintic smoothstep
blends the running reference into another one, ``(1 - s) old(t) + s new(t - t_switch)``, so that
position, velocity and acceleration are continuous at both ends of the blend whatever the two
references do there; the new reference's clock starts at the switch.
"""
from __future__ import annotations

import numpy as np

from invdyn_ros.errors import ConfigError


def _smoothstep(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quintic smoothstep s(tau) and its derivatives w.r.t. tau, tau clipped to [0, 1]."""
    inside = (tau > 0.0) & (tau < 1.0)
    x = np.clip(tau, 0.0, 1.0)
    s = x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)
    ds = np.where(inside, 30.0 * x * x * (1.0 - x) ** 2, 0.0)
    dds = np.where(inside, 60.0 * x * (1.0 - x) * (1.0 - 2.0 * x), 0.0)
    return s, ds, dds


class FourierTrajectory:
    """Seeded finite-Fourier-series reference for ``n`` joints with a smooth ramp-in.

    ``lower`` / ``upper``: joint limits (rad), default +-pi. ``center``: the mean pose, default the
    middle of the limits; ``start``: the pose the arm rests at when ``t <= 0``, default ``center``.
    Both are clipped into the limits shrunk by ``margin``. ``ramp_s``: the shortest ramp-in
    duration (lengthened automatically if the bounds require it; see ``ramp_duration``).
    ``sample(t)`` accepts a scalar (-> three ``(n,)`` arrays) or an array of times (-> ``(N, n)``).
    ``speed``: play the motion ``speed`` times faster -- base frequency x speed, velocity bound
    x speed, acceleration bound x speed^2 -- so that (after the ramp-in) ``q(t)`` is exactly the
    ``speed = 1`` reference at ``speed t``: faster, with higher velocities and accelerations than
    the original ever reaches (the demo's unseen reference).
    """

    def __init__(self, n: int, seed: int = 0, base_freq_hz: float = 0.1, harmonics: int = 5, *,
                 center=None, start=None, lower=None, upper=None, margin: float = 0.2,
                 max_amplitude: float = 1.0, max_velocity: float = 1.5,
                 max_acceleration: float = 4.0, ramp_s: float = 2.0, speed: float = 1.0) -> None:
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ConfigError(f'n: must be a positive integer, got {n!r}')
        if not (isinstance(harmonics, (int, np.integer)) and harmonics >= 1):
            raise ConfigError(f'harmonics: must be a positive integer, got {harmonics!r}')
        for name, value in (('base_freq_hz', base_freq_hz), ('max_amplitude', max_amplitude),
                            ('max_velocity', max_velocity), ('max_acceleration', max_acceleration)):
            if not (np.isfinite(value) and value > 0.0):
                raise ConfigError(f'{name}: must be > 0, got {value!r}')
        for name, value in (('margin', margin), ('ramp_s', ramp_s)):
            if not (np.isfinite(value) and value >= 0.0):
                raise ConfigError(f'{name}: must be >= 0, got {value!r}')
        if not (np.isfinite(speed) and speed > 0.0):
            raise ConfigError(f'speed: must be > 0, got {speed!r}')
        # The same motion played `speed` times faster: q_speed(t) = q(speed t).
        base_freq_hz, max_velocity = base_freq_hz * speed, max_velocity * speed
        max_acceleration = max_acceleration * speed * speed
        self.speed = float(speed)
        self.n, self.seed, self.harmonics = int(n), int(seed), int(harmonics)
        self.base_freq_hz = float(base_freq_hz)
        self.w_f = 2.0 * np.pi * self.base_freq_hz
        self.period_s = 1.0 / self.base_freq_hz
        self.max_velocity, self.max_acceleration = float(max_velocity), float(max_acceleration)

        self.lower = self._vec('lower', lower, -np.pi)
        self.upper = self._vec('upper', upper, np.pi)
        if np.any(self.upper - self.lower <= 2.0 * margin):
            raise ConfigError(f'margin: {margin} leaves no room inside the joint limits')
        lo, hi = self.lower + margin, self.upper - margin
        mid = 0.5 * (self.lower + self.upper)
        self.center = np.clip(self._vec('center', center, 0.0) if center is not None else mid,
                              lo, hi)
        self.start = (np.clip(self._vec('start', start, 0.0), lo, hi) if start is not None
                      else self.center.copy())

        # Raw coefficients, then one scale factor per joint.
        rng = np.random.default_rng(self.seed)
        a = rng.standard_normal((self.n, self.harmonics))
        b = rng.standard_normal((self.n, self.harmonics))
        self.a, self.b = a, b  # provisional, for _fourier on the grid
        grid = np.linspace(0.0, self.period_s, 64 * self.harmonics, endpoint=False)
        dq, qd, qdd = self._fourier(grid)
        room = np.minimum(np.minimum(self.center - lo, hi - self.center), max_amplitude)
        if np.any(room <= 0.0):
            raise ConfigError('center: no room for motion between the centre and the limits')
        safety = 0.98
        scale = safety * np.min(np.stack([
            room / np.max(np.abs(dq), axis=0),
            self.max_velocity / np.max(np.abs(qd), axis=0),
            self.max_acceleration / np.max(np.abs(qdd), axis=0),
        ]), axis=0)
        self.a = a * scale[:, None]
        self.b = b * scale[:, None]
        # Precomputed for the scalar fast path (one sample per control step).
        self._wk = self.w_f * np.arange(1, self.harmonics + 1)
        self._a_over_wk, self._b_over_wk = self.a / self._wk, self.b / self._wk
        self._a_wk, self._b_wk = self.a * self._wk, self.b * self._wk
        self.ramp_duration = self._fit_ramp(float(ramp_s))

    # ------------------------------------------------------------------ internals
    def _vec(self, name: str, value, default: float) -> np.ndarray:
        if value is None:
            return np.full(self.n, float(default))
        arr = np.asarray(value, dtype=float).reshape(-1)
        if arr.shape != (self.n,) or not np.all(np.isfinite(arr)):
            raise ConfigError(f'{name}: expected {self.n} finite values, got {value!r}')
        return arr

    def _fourier(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Zero-centred Fourier part and its derivatives at times ``t`` (N,) -> three (N, n)."""
        k = np.arange(1, self.harmonics + 1)
        wk = self.w_f * k                                   # (K,)
        phase = t[:, None] * wk[None, :]                    # (N, K)
        s, c = np.sin(phase), np.cos(phase)
        dq = s @ (self.a / wk).T - c @ (self.b / wk).T      # (N, n)
        qd = c @ self.a.T + s @ self.b.T
        qdd = -s @ (self.a * wk).T + c @ (self.b * wk).T
        return dq, qd, qdd

    def _sample(self, t: np.ndarray, ramp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dq, fd, fdd = self._fourier(np.maximum(t, 0.0))
        f = self.center + dq
        if ramp > 0.0:
            s, ds, dds = _smoothstep(t / ramp)
            ds, dds = ds / ramp, dds / (ramp * ramp)
        else:
            s = (t >= 0.0).astype(float)
            ds = dds = np.zeros_like(t)
        s, ds, dds = s[:, None], ds[:, None], dds[:, None]
        diff = f - self.start
        q = self.start + s * diff
        qd = ds * diff + s * fd
        qdd = dds * diff + 2.0 * ds * fd + s * fdd
        return q, qd, qdd

    def _fit_ramp(self, ramp: float) -> float:
        """The shortest ramp (``ramp`` doubled as needed) whose blend respects the bounds."""
        if ramp == 0.0 and not np.allclose(self.start, self.center):
            ramp = 1.0  # a position jump is never acceptable; start from 1 s and lengthen
        for _ in range(12):
            if ramp == 0.0:
                return ramp
            grid = np.linspace(0.0, ramp, max(200, int(200 * ramp)))
            _, qd, qdd = self._sample(grid, ramp)
            if (np.max(np.abs(qd)) <= self.max_velocity
                    and np.max(np.abs(qdd)) <= self.max_acceleration):
                return ramp
            ramp *= 2.0
        raise ConfigError('ramp_s: no ramp-in up to 4096x the requested duration meets the '
                          'velocity/acceleration bounds; move start closer to center')

    # ------------------------------------------------------------------ public
    def sample(self, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, qd, qdd)`` at time ``t`` (s since the start of the motion; t <= 0 is at rest at
        ``start``). Scalar t -> ``(n,)`` arrays; array t -> ``(N, n)`` arrays. Non-finite t raises
        ``ValueError`` (a reference must never be NaN)."""
        if isinstance(t, (float, int, np.floating, np.integer)) and not isinstance(t, bool):
            return self._sample_scalar(float(t))
        t_arr = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(t_arr)):
            raise ValueError('t: must be finite')
        q, qd, qdd = self._sample(np.atleast_1d(t_arr).reshape(-1), self.ramp_duration)
        if t_arr.ndim == 0:
            return q[0], qd[0], qdd[0]
        shape = t_arr.shape + (self.n,)
        return q.reshape(shape), qd.reshape(shape), qdd.reshape(shape)

    def _sample_scalar(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same as ``_sample`` for one time, without the (N, K) matrix machinery (~10x faster;
        the controller samples twice per 2 ms step)."""
        if not np.isfinite(t):
            raise ValueError('t: must be finite')
        tc = max(t, 0.0)
        phase = self._wk * tc
        sn, cs = np.sin(phase), np.cos(phase)
        f = self.center + self._a_over_wk @ sn - self._b_over_wk @ cs
        fd = self.a @ cs + self.b @ sn
        fdd = self._b_wk @ cs - self._a_wk @ sn
        ramp = self.ramp_duration
        if t < 0.0 or (t == 0.0 and ramp > 0.0):
            return self.start.copy(), np.zeros(self.n), np.zeros(self.n)
        if ramp <= 0.0 or t >= ramp:
            return f, fd, fdd
        x = t / ramp
        s = x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x)
        ds = 30.0 * x * x * (1.0 - x) ** 2 / ramp
        dds = 60.0 * x * (1.0 - x) * (1.0 - 2.0 * x) / (ramp * ramp)
        diff = f - self.start
        return (self.start + s * diff, ds * diff + s * fd,
                dds * diff + 2.0 * ds * fd + s * fdd)

    def __call__(self, t):
        return self.sample(t)


class SwitchedTrajectory:
    """``old`` until ``t_switch``, then a quintic-smoothstep blend into ``new`` (whose clock starts
    at the switch: it is sampled at ``t - t_switch``) over ``ramp_duration``, then ``new`` alone.

    Why a blend rather than a ramp from rest: the arm is moving at the switch, and a reference
    that jumps in position, velocity or acceleration would kick the loop and put the switch's
    transient into the measurement. With ``s(0) = s'(0) = s''(0) = 0`` and ``s(1) = 1,
    s'(1) = s''(1) = 0`` the blend starts exactly on ``old`` and ends exactly on ``new``:

        q   = (1 - s) q_o + s q_n
        qd  = (1 - s) qd_o + s qd_n + s' (q_n - q_o)
        qdd = (1 - s) qdd_o + s qdd_n + 2 s' (qd_n - qd_o) + s'' (q_n - q_o)

    Positions are convex combinations of two in-limit positions (in the limits). The extra
    terms shrink as the ramp grows: ``min_ramp_s`` is lengthened (x1.25 steps) until
    ``|qd| <= max_velocity`` and ``|qdd| <= max_acceleration`` on a dense grid (default: the larger
    bounds of the two references). ``old`` and ``new``: anything with ``sample(t)`` and ``n``
    (``FourierTrajectory``, another ``SwitchedTrajectory``). ``ConfigError`` if no ramp up to
    ~90x ``min_ramp_s`` meets the bounds.
    """

    def __init__(self, old, new, t_switch: float, min_ramp_s: float = 2.0, *,
                 max_velocity: float | None = None,
                 max_acceleration: float | None = None) -> None:
        if old.n != new.n:
            raise ConfigError(f'new reference: {new.n} joints, the running one has {old.n}')
        if not (np.isfinite(t_switch) and np.isfinite(min_ramp_s) and min_ramp_s > 0.0):
            raise ConfigError(f'switch: t_switch finite and min_ramp_s > 0 required, got '
                              f'{t_switch!r}, {min_ramp_s!r}')
        self.old, self.new, self.n = old, new, old.n
        self.t_switch = float(t_switch)
        self.max_velocity = float(max_velocity if max_velocity is not None
                                  else max(old.max_velocity, new.max_velocity))
        self.max_acceleration = float(max_acceleration if max_acceleration is not None
                                      else max(old.max_acceleration, new.max_acceleration))
        self.period_s = getattr(new, 'period_s', None)
        self.ramp_duration = self._fit_ramp(float(min_ramp_s))

    def _blend(self, t: np.ndarray, ramp: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The blend at times ``t`` (N,) in ``[t_switch, t_switch + ramp]`` -> three (N, n)."""
        qo, qdo, qddo = self.old.sample(t)
        qn, qdn, qddn = self.new.sample(t - self.t_switch)
        s, ds, dds = _smoothstep((t - self.t_switch) / ramp)
        s, ds, dds = s[:, None], (ds / ramp)[:, None], (dds / (ramp * ramp))[:, None]
        diff = qn - qo
        return ((1.0 - s) * qo + s * qn,
                (1.0 - s) * qdo + s * qdn + ds * diff,
                (1.0 - s) * qddo + s * qddn + 2.0 * ds * (qdn - qdo) + dds * diff)

    def _fit_ramp(self, ramp: float) -> float:
        for _ in range(20):
            grid = self.t_switch + np.linspace(0.0, ramp, max(400, int(400 * ramp)))
            _, qd, qdd = self._blend(grid, ramp)
            if np.max(np.abs(qd)) <= self.max_velocity and \
                    np.max(np.abs(qdd)) <= self.max_acceleration:
                return ramp
            ramp *= 1.25
        raise ConfigError('switch: no blend up to ~90x the minimum ramp meets the velocity / '
                          'acceleration bounds')

    @property
    def ramp_end_s(self) -> float:
        """Trajectory time at which the blend is over (``new`` alone from then on)."""
        return self.t_switch + self.ramp_duration

    def sample(self, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(q, qd, qdd)`` at ``t`` like :meth:`FourierTrajectory.sample` (scalar or array)."""
        scalar = isinstance(t, (float, int, np.floating, np.integer)) and not isinstance(t, bool)
        if scalar:
            t = float(t)
            if not np.isfinite(t):
                raise ValueError('t: must be finite')
            if t <= self.t_switch:
                return self.old.sample(t)
            if t >= self.ramp_end_s:
                return self.new.sample(t - self.t_switch)
            q, qd, qdd = self._blend(np.array([t]), self.ramp_duration)
            return q[0], qd[0], qdd[0]
        t_arr = np.asarray(t, dtype=float)
        if not np.all(np.isfinite(t_arr)):
            raise ValueError('t: must be finite')
        flat = np.atleast_1d(t_arr).reshape(-1)
        q, qd, qdd = (np.zeros((flat.size, self.n)) for _ in range(3))
        parts = (flat <= self.t_switch, flat >= self.ramp_end_s)
        blend = ~(parts[0] | parts[1])
        for sel, fn in ((parts[0], lambda x: self.old.sample(x)),
                        (parts[1], lambda x: self.new.sample(x - self.t_switch)),
                        (blend, lambda x: self._blend(x, self.ramp_duration))):
            if np.any(sel):
                q[sel], qd[sel], qdd[sel] = fn(flat[sel])
        if t_arr.ndim == 0:
            return q[0], qd[0], qdd[0]
        shape = t_arr.shape + (self.n,)
        return q.reshape(shape), qd.reshape(shape), qdd.reshape(shape)

    def __call__(self, t):
        return self.sample(t)


__all__ = ['FourierTrajectory', 'SwitchedTrajectory']
