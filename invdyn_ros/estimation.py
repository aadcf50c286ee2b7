"""Streaming and offline state estimation: joint samples -> filtered (q, qd, qdd, tau).

The network learns ``tau_k = f(window of (q, qd, qdd) up to k)``. Drivers publish positions (and
usually velocities and efforts) but no accelerations, and every signal carries encoder / current
noise, so the estimator low-pass filters, differentiates and *aligns* the channels.

Causal chain of :class:`StreamingEstimator` (one Butterworth design ``H`` in ``sos`` form)::

    v      = the driver's velocity where finite, else (q_k - q_{k-1}) / dt_k   (real stamp difference)
    mean   = (x_k + x_{k-1}) / 2              for x in q, v, tau    (half a sample of delay)
    dv     = v_k - v_{k-1},  dtv = tv_k - tv_{k-1}                   (half a sample of delay)
    [mean(q), mean(v), mean(tau), dv, dtv] --H--H-->  q, qd, tau, num, den     (ONE sosfilt call)
    qdd    = num / den

Why it looks like this:

* Every output channel goes through the same stages -- one half-sample FIR and two identical
  low-pass stages -- so all share one delay, :func:`filter_delay_s` = ``(2 gd(H) + 0.5) / rate``.
  The backward difference ``(1 - z^-1)`` and the two-tap mean ``(1 + z^-1)/2`` both have exactly
  half a sample of linear-phase delay, so the match holds at every frequency, not only at DC.
  Alignment: the label ``tau_k`` belongs to ``(q_k, qd_k, qdd_k)`` of the same stamp; every channel
  describes the robot ``filter_delay_s`` before that stamp.
* Linear filters commute, so "low-pass the velocity, take the backward difference with the real dt,
  low-pass again" equals ``H H (dv) / dt`` for regular stamps -- and both low-pass stages then run
  as one cascaded ``sosfilt`` call over all channels stacked (the public scipy wrapper costs ~50 us
  per call, the compiled kernel ~2 us, see ``_filter_inplace``).
* The real dt enters as the chain rule in sample index: ``qdd = H H (dv/dk) / H H (dt/dk)``. With
  regular stamps the denominator *is* dt; with jittered or bursty stamps a velocity change is divided
  by the time elapsed over the same (equally filtered) samples, so one short stamp difference cannot
  produce an acceleration spike. ``tv`` is the time a velocity refers to: the stamp for the driver's
  velocity, the middle of the interval for a position difference.
* A velocity derived from positions describes the middle of the last interval, so qd and qdd then lag
  q and tau by another half sample (0.5 ms at 1 kHz).

Robustness: a sample with a non-finite or wrongly sized position / effort, an absurd magnitude, or a
duplicate / backwards stamp is rejected and counted *before* anything is touched, so the outputs that
follow are exactly those of a stream without it. A gap longer than ``max_gap_s`` (or a jump back in
time by more than ``max_gap_s``, i.e. a restarted clock or replayed bag) re-initialises the filter at
the new sample's steady state (``sosfilt_zi``), so there is no start-up transient.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.signal

from invdyn_ros.errors import ConfigError, DatasetError

__all__ = ['FilterConfig', 'State', 'StreamingEstimator', 'estimate_offline', 'filter_delay_s',
           'design_filter']

#: Stamp differences collected before the nominal rate is estimated (``rate_hz=None``).
WARMUP_INTERVALS = 20
#: When the (measured) rate puts the cutoff at or above Nyquist, the cutoff is clamped to this
#: fraction of the rate instead of failing at run time.
MAX_CUTOFF_FRACTION = 0.45


@dataclass(frozen=True)
class FilterConfig:
    """Parameters of the estimator.

    order / cutoff_hz: Butterworth low-pass applied per stage (two stages in the causal chain).
    rate_hz: nominal sample rate; None measures it (median of the first 20 stamp differences).
    max_gap_s: a longer stamp difference resets the filters.
    max_abs_*: samples beyond these magnitudes (rad or m, rad/s or m/s, N m or N) are rejected.
    """

    order: int = 2
    cutoff_hz: float = 30.0
    rate_hz: float | None = None
    max_gap_s: float = 0.1
    max_abs_position: float = 100.0
    max_abs_velocity: float = 100.0
    max_abs_effort: float = 1e4

    def validate(self) -> 'FilterConfig':
        """Raise :class:`ConfigError` naming the first invalid parameter; return self."""
        if isinstance(self.order, bool) or not isinstance(self.order, (int, np.integer)) \
                or not 1 <= int(self.order) <= 8:
            raise ConfigError(f'filter order must be an integer in 1..8, got {self.order!r}')
        for name in ('cutoff_hz', 'max_gap_s', 'max_abs_position', 'max_abs_velocity',
                     'max_abs_effort'):
            value = getattr(self, name)
            if not _positive_finite(value):
                raise ConfigError(f'{name} must be a finite number > 0, got {value!r}')
        if self.rate_hz is not None:
            if not _positive_finite(self.rate_hz):
                raise ConfigError(f'rate_hz must be None or a finite number > 0, got {self.rate_hz!r}')
            if self.cutoff_hz >= 0.5 * self.rate_hz:
                raise ConfigError(f'cutoff_hz ({self.cutoff_hz}) must be below the Nyquist frequency '
                                  f'rate_hz / 2 ({0.5 * self.rate_hz})')
        return self


@dataclass(frozen=True)
class State:
    """Filtered joint state; every array describes the robot ``filter_delay_s`` before ``stamp``.

    stamp is the stamp (s) of the newest input sample; tau is None when the sample had no efforts.
    """

    stamp: float
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray | None


def _positive_finite(value: object) -> bool:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0.0 and not isinstance(value, bool)


def design_filter(config: FilterConfig, rate_hz: float) -> tuple[np.ndarray, float]:
    """The Butterworth ``sos`` of one stage at ``rate_hz`` and the cutoff actually used.

    The cutoff is clamped to ``MAX_CUTOFF_FRACTION * rate_hz`` when a measured rate is too low for
    the configured one (a configured rate is checked by :meth:`FilterConfig.validate` instead).
    """
    if not _positive_finite(rate_hz):
        raise ConfigError(f'rate_hz must be a finite number > 0, got {rate_hz!r}')
    cutoff = min(float(config.cutoff_hz), MAX_CUTOFF_FRACTION * float(rate_hz))
    sos = scipy.signal.butter(int(config.order), cutoff, btype='low', output='sos', fs=float(rate_hz))
    return np.ascontiguousarray(sos, dtype=np.float64), cutoff


def filter_delay_s(config: FilterConfig, rate_hz: float) -> float:
    """Low-frequency group delay (s) of the whole causal chain, equal for every output channel.

    Two Butterworth stages (group delay of one stage evaluated at 0.1 % of the cutoff) plus the half
    sample of the backward difference / two-tap mean between them. For velocities derived from
    positions add another half sample to qd and qdd.
    """
    sos, cutoff = design_filter(config, rate_hz)
    b, a = scipy.signal.sos2tf(sos)
    _, gd = scipy.signal.group_delay((b, a), w=[1e-3 * cutoff], fs=float(rate_hz))
    return float((2.0 * gd[0] + 0.5) / float(rate_hz))


def _load_kernel():
    """scipy's compiled sosfilt kernel, if present and equal to the public ``sosfilt`` here.

    ``scipy.signal.sosfilt`` spends ~50 us per call on argument handling for a (C, 1) input; the
    kernel it calls takes ~2 us and filters in place. It is private API, so it is used only after
    a self-check against the public function; otherwise ``_filter_inplace`` falls back to it.
    """
    try:
        from scipy.signal._sosfilt import _sosfilt as kernel  # noqa: PLC0415
        rng = np.random.default_rng(0)
        sos = scipy.signal.butter(3, 0.2, output='sos')
        x = rng.normal(size=(3, 5))
        zi = rng.normal(size=(sos.shape[0], 3, 2))
        y_ref, z_ref = scipy.signal.sosfilt(sos, x, axis=1, zi=zi)
        x_k = np.ascontiguousarray(x)
        z_k = np.ascontiguousarray(np.moveaxis(zi, 0, 1))
        kernel(sos, x_k, z_k)
        if np.allclose(x_k, y_ref, rtol=1e-12, atol=1e-12) and \
                np.allclose(z_k, np.moveaxis(z_ref, 1, 0), rtol=1e-12, atol=1e-12):
            return kernel
    except Exception:  # noqa: BLE001 - any failure just means: use the public function
        pass
    return None


_SOSFILT_KERNEL = _load_kernel()


def _filter_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """``x`` (C, k) and ``zi`` (C, n_sections, 2), both C-contiguous float64, filtered in place.

    Same result as ``scipy.signal.sosfilt(sos, x, axis=1, zi=zi moved to (n_sections, C, 2))``.
    """
    if _SOSFILT_KERNEL is not None:
        _SOSFILT_KERNEL(sos, x, zi)
        return
    y, zf = scipy.signal.sosfilt(sos, x, axis=1, zi=np.moveaxis(zi, 0, 1))
    x[...] = y
    zi[...] = np.moveaxis(zf, 1, 0)


class StreamingEstimator:
    """Causal per-sample estimator; see the module docstring for the chain and its delay.

    ``update`` costs one in-place ``sosfilt`` over all channels stacked plus a few vector operations
    on preallocated buffers. ``counters`` (cumulative): accepted, rejected_nonfinite, rejected_shape,
    rejected_magnitude, dropped_stamp, resets (automatic: gaps and clock jumps),
    velocity_from_positions (samples where at least one joint's velocity came from positions).
    """

    _COUNTER_NAMES = ('accepted', 'rejected_nonfinite', 'rejected_shape', 'rejected_magnitude',
                      'dropped_stamp', 'resets', 'velocity_from_positions')

    def __init__(self, n_joints: int, config: FilterConfig | None = None) -> None:
        if isinstance(n_joints, bool) or not isinstance(n_joints, (int, np.integer)) or n_joints < 1:
            raise ConfigError(f'n_joints must be a positive integer, got {n_joints!r}')
        self.n = int(n_joints)
        self.config = (config if config is not None else FilterConfig()).validate()
        self.counters: dict[str, int] = {name: 0 for name in self._COUNTER_NAMES}
        n = self.n
        # filter channels: mean(q), mean(v), mean(tau), dv, dtv  -> q, qd, tau, num, den
        self._x = np.zeros((5 * n, 1))
        self._raw = np.zeros(3 * n)          # [q, v, tau] of this sample (scratch until accepted)
        self._abs = np.zeros(3 * n)
        self._ok = np.zeros(3 * n, dtype=bool)
        cfg = self.config
        self._limits = np.repeat([cfg.max_abs_position, cfg.max_abs_velocity, cfg.max_abs_effort], n)
        self._raw_prev = np.zeros(3 * n)     # ... of the previous accepted (filtered) sample
        self._tv = np.zeros(n)               # time each velocity refers to
        self._tv_prev = np.zeros(n)
        self._q_prev = np.zeros(n)           # for position differences
        self._tau_hold = np.zeros(n)         # last efforts, fed while a sample has none
        self._dts: list[float] = []
        self.sos: np.ndarray | None = None   # one stage
        self.rate_hz: float | None = None
        self.cutoff_hz: float | None = None
        self.delay_s: float | None = None
        if self.config.rate_hz is not None:
            self._design(float(self.config.rate_hz))
        self.reset()

    # ------------------------------------------------------------------ state handling
    def _design(self, rate_hz: float) -> None:
        self.sos, self.cutoff_hz = design_filter(self.config, rate_hz)
        self.rate_hz = rate_hz
        self.delay_s = filter_delay_s(self.config, rate_hz)
        self._sos2 = np.ascontiguousarray(np.vstack([self.sos, self.sos]))   # the two stages
        self._zi_unit = scipy.signal.sosfilt_zi(self._sos2)                  # (2 n_sections, 2)
        self._zi = np.zeros((self._x.shape[0], self._sos2.shape[0], 2))
        self._den_floor = 0.1 / rate_hz

    def reset(self) -> None:
        """Forget the signal history (filter, previous sample). Keeps the rate and the counters."""
        self._have_prev = False
        self._t_prev = -math.inf
        self._primed = False
        self._tau_seen = False
        self._dts.clear()

    def _auto_reset(self) -> None:
        self.counters['resets'] += 1
        self.reset()

    def _prime_channels(self, sl: slice) -> None:
        """Steady-state initial conditions for channels ``sl`` at their current input."""
        self._zi[sl] = self._x[sl, 0][:, None, None] * self._zi_unit[None, :, :]

    # ------------------------------------------------------------------ input checks
    def _vector(self, value: object, optional: bool) -> np.ndarray | None | bool:
        """``value`` as a float64 (n,) vector; None when optional and absent; False when malformed."""
        if value is None:
            return None if optional else False
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        if optional and arr.size == 0:
            return None
        if arr.shape != (self.n,):
            return False
        return arr

    def _classify(self, t: float, q: np.ndarray, qd: np.ndarray | None,
                  tau: np.ndarray | None) -> str | np.ndarray | None:
        """Slow path after the one-pass check failed: the counter to bump, or the finite-qd mask.

        Only non-finite *velocities* are tolerated (replaced by position differences).
        """
        if not math.isfinite(t) or not np.isfinite(q).all() \
                or (tau is not None and not np.isfinite(tau).all()):
            return 'rejected_nonfinite'
        n, ok = self.n, self._ok
        if not ok[:n].all() or not ok[2 * n:].all():
            return 'rejected_magnitude'
        if qd is None:
            return None
        qd_finite = np.isfinite(qd)
        if (qd_finite & ~ok[n:2 * n]).any():
            return 'rejected_magnitude'
        return qd_finite

    # ------------------------------------------------------------------ main entry
    def update(self, stamp: float, q: object, qd: object = None, tau: object = None) -> State | None:
        """Feed one sample; return the filtered State, or None (warming up, priming or rejected).

        stamp: seconds (any epoch, strictly increasing). q, qd, tau: (n,) in joint order; qd and tau
        may be None or empty; non-finite qd entries are replaced by position differences.
        """
        counters = self.counters
        n = self.n
        try:
            t = float(stamp)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            counters['rejected_shape'] += 1
            return None
        q_arr = self._vector(q, optional=False)
        qd_arr = self._vector(qd, optional=True)
        tau_arr = self._vector(tau, optional=True)
        if q_arr is False or qd_arr is False or tau_arr is False:
            counters['rejected_shape'] += 1
            return None
        assert isinstance(q_arr, np.ndarray)
        # One pass over all values into the scratch row [q, v, tau]: |x| <= limit is False for NaN,
        # Inf and absurd magnitudes alike; only a failing sample takes the slow path to classify.
        raw = self._raw
        raw[:n] = q_arr
        raw[n:2 * n] = qd_arr if qd_arr is not None else 0.0
        raw[2 * n:] = tau_arr if tau_arr is not None else self._tau_hold
        np.abs(raw, out=self._abs)
        qd_finite = None                     # None: every driver velocity usable (or none given)
        if not (math.isfinite(t) and np.less_equal(self._abs, self._limits, out=self._ok).all()):
            verdict = self._classify(t, q_arr, qd_arr, tau_arr)
            if isinstance(verdict, str):
                counters[verdict] += 1
                return None
            qd_finite = verdict
        cfg = self.config
        # Stamp order and gaps (after the data checks, so a bad sample is counted once).
        dt = t - self._t_prev
        if self._have_prev:
            if -cfg.max_gap_s <= dt <= 0.0:
                counters['dropped_stamp'] += 1
                return None
            if dt > cfg.max_gap_s or dt < -cfg.max_gap_s:
                # A gap, or the clock jumped back by more than a gap (restarted source, looped
                # bag): history no longer describes this signal. Without this rule one far-future
                # stamp would make every later sample look "backwards" forever.
                self._auto_reset()
        have_diff = self._have_prev          # False right after start / reset
        need_diff = qd_arr is None or qd_finite is not None
        if need_diff and have_diff:
            v_diff = q_arr - self._q_prev
            v_diff /= dt
            if np.abs(v_diff).max() > cfg.max_abs_velocity:
                counters['rejected_magnitude'] += 1
                return None

        # ---- accepted: from here on the state may change
        counters['accepted'] += 1
        self._have_prev = True
        self._t_prev = t
        self._q_prev[:] = q_arr
        if need_diff and not have_diff:
            return None                      # nothing to difference against yet: prime only
        tv = self._tv
        if need_diff:
            counters['velocity_from_positions'] += 1
            if qd_finite is None:
                raw[n:2 * n] = v_diff
                tv.fill(t - 0.5 * dt)
            else:
                np.copyto(raw[n:2 * n], v_diff, where=~qd_finite)
                np.copyto(tv, np.where(qd_finite, t, t - 0.5 * dt))
        else:
            tv.fill(t)
        if tau_arr is not None:
            self._tau_hold[:] = tau_arr

        if self.sos is None:                 # measuring the nominal rate
            if have_diff:
                self._dts.append(dt)
            if len(self._dts) < WARMUP_INTERVALS:
                return None
            self._design(1.0 / float(np.median(self._dts)))

        x = self._x[:, 0]
        if not self._primed:
            # Steady state at this sample: previous = current, zero acceleration.
            self._raw_prev[:] = raw
            self._tv_prev[:] = tv - (dt if have_diff else 1.0 / self.rate_hz)  # type: ignore[operator]
            self._tau_seen = tau_arr is not None
        elif tau_arr is not None and not self._tau_seen:
            self._raw_prev[2 * n:] = raw[2 * n:]   # first efforts since the reset
        prev = self._raw_prev
        np.add(raw, prev, out=x[:3 * n])
        x[:3 * n] *= 0.5
        np.subtract(raw[n:2 * n], prev[n:2 * n], out=x[3 * n:4 * n])
        np.subtract(tv, self._tv_prev, out=x[4 * n:])
        if not self._primed:
            self._prime_channels(slice(None))
            self._primed = True
        elif tau_arr is not None and not self._tau_seen:
            self._prime_channels(slice(2 * n, 3 * n))
            self._tau_seen = True
        prev[:] = raw
        self._tv_prev[:] = tv

        _filter_inplace(self._sos2, self._x, self._zi)
        out = x[:4 * n].copy()
        np.divide(out[3 * n:], np.maximum(x[4 * n:], self._den_floor), out=out[3 * n:])
        if not np.isfinite(out).all():       # impossible for bounded inputs; never emit it
            counters['rejected_nonfinite'] += 1
            self._auto_reset()
            return None
        return State(stamp=t, q=out[:n], qd=out[n:2 * n], qdd=out[3 * n:],
                     tau=out[2 * n:3 * n] if tau_arr is not None else None)


# ---------------------------------------------------------------------- offline
def _segments(t: np.ndarray, max_gap_s: float) -> list[slice]:
    breaks = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    edges = np.concatenate(([0], breaks, [len(t)]))
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _filtfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filter along axis 0; short segments use a shorter padding (or none)."""
    default_pad = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    if len(x) < 2:
        return x.copy()
    return scipy.signal.sosfiltfilt(sos, x, axis=0, padlen=min(default_pad, len(x) - 1))


def _gradient(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    if len(t) < 2:
        return np.zeros_like(x)
    return np.gradient(x, t, axis=0)


def estimate_offline(t: object, q: object, qd: object = None, tau: object = None,
                     config: FilterConfig | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Zero-phase (``sosfiltfilt``) estimate for recorded arrays: returns (q, qd, qdd, tau).

    t: (N,) strictly increasing seconds; q, qd, tau: (N, n). Velocity is the recorded one where
    finite, else ``np.gradient(q, t)`` (exact secants of the raw samples); qdd is ``np.gradient`` of
    the filtered velocity against the equally filtered real t (chain rule in sample index, see the
    module docstring; equal to t for regular stamps). Each channel is filtered once forward and once
    backward: the magnitude response of the two causal stages of :class:`StreamingEstimator`
    without their delay (the half-sample mean / difference are replaced by central differences).
    Segments separated by more than ``max_gap_s`` are processed independently. Raises
    :class:`DatasetError` for malformed or non-finite arrays (drop duplicate stamps first).
    """
    cfg = (config if config is not None else FilterConfig()).validate()
    t_arr = np.asarray(t, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    if t_arr.ndim != 1 or q_arr.ndim != 2 or q_arr.shape[0] != t_arr.shape[0] or len(t_arr) == 0:
        raise DatasetError(f'expected t (N,) and q (N, n) with N > 0, got {t_arr.shape} and '
                           f'{q_arr.shape}')
    shape = q_arr.shape

    def optional(name: str, value: object) -> np.ndarray | None:
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 0:
            return None
        if arr.shape != shape:
            raise DatasetError(f'{name} must have shape {shape}, got {arr.shape}')
        return arr

    qd_arr = optional('qd', qd)
    tau_arr = optional('tau', tau)
    if not np.isfinite(t_arr).all() or not np.isfinite(q_arr).all() \
            or (tau_arr is not None and not np.isfinite(tau_arr).all()):
        raise DatasetError('t, q and tau must be finite')
    dts = np.diff(t_arr)
    if (dts <= 0).any():
        raise DatasetError('t must be strictly increasing (drop duplicate stamps first)')
    if cfg.rate_hz is not None:
        rate = float(cfg.rate_hz)
    elif len(dts):
        rate = 1.0 / float(np.median(dts))
    else:
        rate = 2.5 * cfg.cutoff_hz    # one sample: nothing to filter, any valid design will do
    sos, _ = design_filter(cfg, rate)

    q_out = np.empty_like(q_arr)
    qd_out = np.empty_like(q_arr)
    qdd_out = np.empty_like(q_arr)
    tau_out = np.empty_like(q_arr) if tau_arr is not None else None
    for seg in _segments(t_arr, cfg.max_gap_s):
        ts = t_arr[seg]
        v = _gradient(q_arr[seg], ts)
        if qd_arr is not None:
            v = np.where(np.isfinite(qd_arr[seg]), qd_arr[seg], v)
        q_out[seg] = _filtfilt(sos, q_arr[seg])
        qd_out[seg] = _filtfilt(sos, v)
        # Chain rule in sample index, as in the causal chain: the filtered velocity describes the
        # equally filtered time, so differentiate against that (identical to ts for regular
        # stamps; with jitter, dividing by the raw neighbours' dt would add ~jitter-sized errors).
        ts_f = _filtfilt(sos, ts)
        if not (np.diff(ts_f) > 0).all():
            ts_f = ts
        qdd_out[seg] = _gradient(qd_out[seg], ts_f)
        if tau_out is not None:
            tau_out[seg] = _filtfilt(sos, tau_arr[seg])  # type: ignore[index]
    return q_out, qd_out, qdd_out, tau_out
