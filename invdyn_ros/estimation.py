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

Per sample, once primed, the range check and the chain above (means, differences, ``sosfilt``,
``qdd``, finiteness) are two compiled calls (:mod:`invdyn_ros.kernels`, same operations in the
same order, no fastmath: bit-identical) when numba is installed; numpy / scipy otherwise.

Replay: :meth:`StreamingEstimator.update_many` gives exactly (bit for bit) what ``update`` gives
sample by sample, ~25x faster on clean data: runs of clean steady-state samples become one
(5n, T) channel matrix filtered by one kernel call; everything else goes through ``update``.

Size: over 500 lines because ``StreamingEstimator`` holds both forms of one stage on one filter
state (``update`` and the bit-identical ``update_many``, which falls back to ``update`` for every
sample that is not clean steady state), and both must change together; the rate rule
(:mod:`invdyn_ros.rate`) and the filter design (:mod:`invdyn_ros.filters`) are modules of their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.signal

from invdyn_ros import kernels
from invdyn_ros.errors import ConfigError, DatasetError
from invdyn_ros.filters import FilterConfig, cutoff_error, design_filter, filter_delay_s
from invdyn_ros.rate import (BURST_FRACTION, MISSED_BASE_FRACTION, RATE_BLOCK,  # noqa: F401
                             RATE_BLOCK_SHORT, RATE_TOLERANCE, SETTLE_BLOCKS, WARMUP_INTERVALS,
                             RateEstimator, robust_period)

__all__ = ['FilterConfig', 'State', 'StateBatch', 'StreamingEstimator', 'estimate_offline',
           'filter_delay_s', 'design_filter', 'cutoff_error', 'robust_period']

#: A stamp more than this many nominal periods (but at most ``max_gap_s``) ahead of the previous
#: one is held back: if the next sample continues the old time axis, the held one was an outlier
#: (dropped, counted ``dropped_future_stamp``); if the next one is after it, the jump was real
#: (``stamp_jumps``) and the time axis moves (one sample lost). One bad stamp then drops one
#: sample instead of every genuine sample until the stream catches up with it. (Beyond
#: ``max_gap_s`` the filter resets at the new stamp as before, and a genuine sample after an
#: outlier resets it back: nothing genuine is dropped there.)
FUTURE_JUMP_PERIODS = 5.0
#: ``update_many``: clean runs shorter than this go through ``update`` (setting up the vectorized
#: form costs about as much as a few per-sample calls; both give identical results).
MIN_BATCH_RUN = 8
#: ``update_many``: the longest run filtered by one kernel call; bounds the (5n, T) scratch matrix
#: (the filter state carries over exactly, so splitting a run changes nothing).
MAX_BATCH_RUN = 8192


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


@dataclass(frozen=True, eq=False)
class StateBatch:
    """The States :meth:`StreamingEstimator.update_many` produced, stacked (m of N input samples).

    index (m,) int64: the input sample each State came from (increasing). stamp (m,); q, qd, qdd,
    tau (m, n) float64, tau NaN in rows whose sample had no efforts (``has_tau`` False).
    resets (N,) int64: ``counters['resets']`` right after each *input* sample, so a change between
    samples i-1 and i marks a stream boundary (gap or clock jump) at sample i.
    """

    index: np.ndarray
    stamp: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray
    has_tau: np.ndarray
    resets: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def state(self, j: int) -> State:
        """The j-th State exactly as ``update`` returned it (copies; tau None without efforts)."""
        return State(stamp=float(self.stamp[j]), q=self.q[j].copy(), qd=self.qd[j].copy(),
                     qdd=self.qdd[j].copy(),
                     tau=self.tau[j].copy() if self.has_tau[j] else None)


class _BatchRows(NamedTuple):
    """``update_many``'s input as arrays, plus the checks that do not depend on earlier samples."""

    t: np.ndarray            # (N,) stamps, NaN where not convertible
    q: np.ndarray            # (N, n), NaN rows where malformed
    qd: np.ndarray           # (N, n), NaN rows where absent or malformed
    qd_finite: np.ndarray    # (N, n) bool: the driver's velocity is used (else position difference)
    need_diff: np.ndarray    # (N,) bool: some velocity comes from positions
    tau: np.ndarray          # (N, n)
    tau_present: np.ndarray  # (N,) bool (False where the effort is beyond the label limits)
    row_ok: np.ndarray       # (N,) bool: passes update()'s checks but stamp order and dq/dt
    label_bad: np.ndarray    # (N,) bool: effort dropped (beyond effort_limits, see update())


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
    on preallocated buffers. ``counters`` (cumulative, plain ints): accepted, rejected_nonfinite,
    rejected_shape, rejected_magnitude, dropped_stamp, resets (automatic: gaps, clock jumps and
    re-estimated rates), velocity_from_positions (samples where at least one joint's velocity came
    from positions), dropped_future_stamp and stamp_jumps (``FUTURE_JUMP_PERIODS``), rate_changes
    (the measured rate was re-estimated and the filter redesigned: the caller should warn;
    ``rate_hz`` is the new rate), rejected_labels (efforts beyond ``effort_limits``: the sample is
    kept as one without efforts), cutoff_above_nyquist (samples without output because the
    measured rate puts the cutoff at or above Nyquist: ``filter_error`` says so).

    effort_limits: optional per-joint |effort| limits of a usable *label* (the pipeline passes
    ``torque_limits`` x a margin). A larger (but finite, <= ``max_abs_effort``) effort is not a
    torque the arm can have produced: the sample's state is still estimated and returned, with
    ``tau`` None, and the effort never enters the effort filter (a spike would otherwise smear
    over the following labels). The check is part of the range check (no cost per clean sample).

    Measured rate (``rate_hz=None``) beyond the cutoff: no filter is designed (never a silently
    moved cutoff), ``filter_error`` holds a message naming ``filter_cutoff_hz``, and samples give
    no State until the monitored rate changes to one that allows the cutoff. A node keeps running
    and publishes nothing learned: stopping it would take the feedforward's zeros with it and a
    respawning launch would loop; the error belongs in its log and diagnostics.
    """

    _COUNTER_NAMES = ('accepted', 'rejected_nonfinite', 'rejected_shape', 'rejected_magnitude',
                      'dropped_stamp', 'resets', 'velocity_from_positions',
                      'dropped_future_stamp', 'stamp_jumps', 'rate_changes', 'rejected_labels',
                      'cutoff_above_nyquist')

    def __init__(self, n_joints: int, config: FilterConfig | None = None,
                 effort_limits: object = None) -> None:
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
        # float64 whatever the config holds (an int limit must not make numba compile a new
        # specialisation of the range check on the first message)
        self._limits = np.repeat(np.array([cfg.max_abs_position, cfg.max_abs_velocity,
                                           cfg.max_abs_effort], dtype=np.float64), n)
        self._label_limits: np.ndarray | None = None
        if effort_limits is not None:
            lim = np.asarray(effort_limits, dtype=np.float64)
            if lim.shape != (n,) or not (lim > 0).all():
                raise ConfigError(f'effort_limits: need {n} values > 0, got {effort_limits!r}')
            self._label_limits = lim
            np.minimum(self._limits[2 * n:], lim, out=self._limits[2 * n:])
        self._raw_prev = np.zeros(3 * n)     # ... of the previous accepted (filtered) sample
        self._tv = np.zeros(n)               # time each velocity refers to
        self._tv_prev = np.zeros(n)
        self._q_prev = np.zeros(n)           # for position differences
        self._tau_hold = np.zeros(n)         # last efforts, fed while a sample has none
        self._measure = cfg.rate_hz is None
        self._rate = RateEstimator()         # the monitor of a measured rate
        self._held_t: float | None = None    # a stamp far ahead, held back (FUTURE_JUMP_PERIODS)
        self._jump_dt = math.inf
        self._fast_dt = cfg.max_gap_s        # stamp differences in (0, _fast_dt] need no check
        self.filter_error: str | None = None
        # compiled per-sample kernels (None without numba: the numpy path below)
        self._in_range, self._filter_step = kernels.in_range, kernels.filter_step
        kernels.warm_up()
        self.sos: np.ndarray | None = None   # one stage
        self.rate_hz: float | None = None
        self.cutoff_hz: float | None = None
        self.delay_s: float | None = None
        if self.config.rate_hz is not None:
            self._design(float(self.config.rate_hz))
        self.reset()

    # ------------------------------------------------------------------ state handling
    def _design(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self.filter_error = cutoff_error(self.config, rate_hz)
        if self.filter_error is not None:    # measured rate too low for the cutoff: no filter
            self.sos = self.cutoff_hz = self.delay_s = None
            self._primed = False
            self._update_jump()
            return
        self.sos, self.cutoff_hz = design_filter(self.config, rate_hz)
        self.delay_s = filter_delay_s(self.config, rate_hz)
        self._sos2 = np.ascontiguousarray(np.vstack([self.sos, self.sos]))   # the two stages
        self._zi_unit = scipy.signal.sosfilt_zi(self._sos2)                  # (2 n_sections, 2)
        self._zi = np.zeros((self._x.shape[0], self._sos2.shape[0], 2))
        self._den_floor = 0.1 / rate_hz
        self._update_jump()

    def _update_jump(self) -> None:
        """Stamps are held back as possible outliers (``FUTURE_JUMP_PERIODS``) only while the
        rate is settled: with a wrong rate every genuine stamp could look like a jump."""
        self._jump_dt = FUTURE_JUMP_PERIODS / self.rate_hz \
            if self.rate_settled and self.rate_hz else math.inf
        self._fast_dt = min(self.config.max_gap_s, self._jump_dt)

    def reset(self) -> None:
        """Forget the signal history (filter, previous sample). Keeps the rate (settled or not)
        and the counters; the rate monitor starts a new, short block: the stream may come back at
        another rate."""
        self._have_prev = False
        self._t_prev = -math.inf
        self._primed = False
        self._tau_seen = False
        self._held_t = None
        self._rate.restart()                 # a settled rate stays settled; a short block first
        self._update_jump()

    @property
    def rate_settled(self) -> bool:
        """The rate is known and has been confirmed by ``SETTLE_BLOCKS`` blocks since the last
        (re)design (always True for a configured rate): per-period bookkeeping (missed samples,
        stamps ahead) may trust it."""
        return not self._measure or (self.sos is not None and self._rate.settled)

    def _rate_block(self) -> None:
        """A full block of stamp differences: re-estimate (and redesign) on a sustained change."""
        if self._rate.block():
            self._set_period(self._rate.period)
        self._update_jump()

    def _set_period(self, period: float) -> None:
        first = self.rate_hz is None
        self._design(1.0 / period)
        if not first:                        # a new design: the filter state no longer fits
            self.counters['rate_changes'] += 1
            self.counters['resets'] += 1
            self._primed = False
            self._tau_seen = False

    def _check_stamp(self, t: float, dt: float) -> str | None:
        """The slow path of the stamp checks (dt outside (0, _fast_dt]): 'reset', the counter of
        a dropped sample, or None (go on)."""
        cfg = self.config
        held = self._held_t
        if -cfg.max_gap_s <= dt <= 0.0:
            return 'dropped_stamp'
        if self._jump_dt < dt <= cfg.max_gap_s and held is None:
            self._held_t = t                 # an outlier unless the next sample follows it
            return 'dropped_future_stamp'
        if held is not None:
            self._held_t = None
            if t >= held:                    # two samples agree: the time axis really moved
                self.counters['stamp_jumps'] += 1
        if dt > cfg.max_gap_s or dt < -cfg.max_gap_s:
            # A gap, or the clock jumped back by more than a gap (restarted source, looped
            # bag): history no longer describes this signal. Without this rule one far-future
            # stamp would make every later sample look "backwards" forever.
            return 'reset'
        return None

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
        except (TypeError, ValueError, OverflowError):    # OverflowError: int beyond float range
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
        if not ok[:n].all() or (tau is not None and not ok[2 * n:].all()):
            return 'rejected_magnitude'
        if qd is None:
            return None
        qd_finite = np.isfinite(qd)
        if (qd_finite & ~ok[n:2 * n]).any():
            return 'rejected_magnitude'
        return qd_finite

    def _beyond_label(self, tau: np.ndarray) -> bool:
        """A finite effort within ``max_abs_effort`` but beyond ``effort_limits`` (not a label)."""
        if self._label_limits is None or not np.isfinite(tau).all():
            return False
        a = np.abs(tau)
        return bool((a <= self.config.max_abs_effort).all()) and \
            not bool((a <= self._label_limits).all())

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
        except (TypeError, ValueError, OverflowError):
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
        if self._in_range is not None:
            in_range = self._in_range(raw, self._limits, self._ok)
        else:
            np.abs(raw, out=self._abs)
            in_range = np.less_equal(self._abs, self._limits, out=self._ok).all()
        qd_finite = None                     # None: every driver velocity usable (or none given)
        bad_label = False
        if not (math.isfinite(t) and in_range):
            if tau_arr is not None and self._beyond_label(tau_arr):
                bad_label, tau_arr = True, None  # keep the sample, not its effort
                raw[2 * n:] = self._tau_hold
                in_range = bool(self._ok[:2 * n].all())
            if not (math.isfinite(t) and in_range):
                verdict = self._classify(t, q_arr, qd_arr, tau_arr)
                if isinstance(verdict, str):
                    counters[verdict] += 1
                    return None
                qd_finite = verdict
        cfg = self.config
        # Stamp order and gaps (after the data checks, so a bad sample is counted once).
        dt = t - self._t_prev
        if self._have_prev:
            if not 0.0 < dt <= self._fast_dt:
                stamp_verdict = self._check_stamp(t, dt)
                if stamp_verdict == 'reset':
                    self._auto_reset()
                elif stamp_verdict is not None:
                    counters[stamp_verdict] += 1
                    return None
            elif self._held_t is not None:   # continues the old axis: the held one was an outlier
                self._held_t = None
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
        if bad_label:
            counters['rejected_labels'] += 1
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

        if have_diff and self._measure:      # measuring / monitoring the nominal rate
            rate = self._rate
            rate.dts.append(dt)
            if len(rate.dts) >= rate.size:
                self._rate_block()
        if self.sos is None:                 # not yet known, or too low for the cutoff
            if self.filter_error is not None:
                counters['cutoff_above_nyquist'] += 1
            return None

        out = np.empty(4 * n)
        if self._filter_step is not None and self._primed and (tau_arr is None or self._tau_seen):
            # the steady per-sample case in one compiled call, bit-identical to _step_numpy
            finite = self._filter_step(raw, self._raw_prev, tv, self._tv_prev, self._x, self._zi,
                                       self._sos2, self._den_floor, out)
        else:
            finite = self._step_numpy(raw, tv, dt, have_diff, tau_arr is not None, out)
        if not finite:                       # impossible for bounded inputs; never emit it
            counters['rejected_nonfinite'] += 1
            self._auto_reset()
            return None
        return State(stamp=t, q=out[:n], qd=out[n:2 * n], qdd=out[3 * n:],
                     tau=out[2 * n:3 * n] if tau_arr is not None else None)

    def _step_numpy(self, raw: np.ndarray, tv: np.ndarray, dt: float, have_diff: bool,
                    has_tau: bool, out: np.ndarray) -> bool:
        """The filter chain for an accepted sample (priming included) into ``out`` =
        [q, qd, tau, qdd]; whether it is all finite. ``kernels.filter_step`` is the same once
        primed."""
        n = self.n
        x = self._x[:, 0]
        if not self._primed:
            # Steady state at this sample: previous = current, zero acceleration.
            self._raw_prev[:] = raw
            self._tv_prev[:] = tv - (dt if have_diff else 1.0 / self.rate_hz)  # type: ignore[operator]
            self._tau_seen = has_tau
        elif has_tau and not self._tau_seen:
            self._raw_prev[2 * n:] = raw[2 * n:]   # first efforts since the reset
        prev = self._raw_prev
        np.add(raw, prev, out=x[:3 * n])
        x[:3 * n] *= 0.5
        np.subtract(raw[n:2 * n], prev[n:2 * n], out=x[3 * n:4 * n])
        np.subtract(tv, self._tv_prev, out=x[4 * n:])
        if not self._primed:
            self._prime_channels(slice(None))
            self._primed = True
        elif has_tau and not self._tau_seen:
            self._prime_channels(slice(2 * n, 3 * n))
            self._tau_seen = True
        prev[:] = raw
        self._tv_prev[:] = tv

        _filter_inplace(self._sos2, self._x, self._zi)
        out[:] = x[:4 * n]
        np.divide(out[3 * n:], np.maximum(x[4 * n:], self._den_floor), out=out[3 * n:])
        return bool(np.isfinite(out).all())

    # ------------------------------------------------------------------ batch entry
    def update_many(self, stamps: object, q: object, qd: object = None,
                    tau: object = None) -> StateBatch:
        """Feed N samples; the same States, counters and final state as N calls of :meth:`update`.

        stamps: N stamps; q: N entries; qd, tau: None or N entries, each entry what ``update``
        takes (malformed ones are rejected and counted the same way). 2-D float arrays (N, n) are
        the fast path; NaN rows are allowed (as in ``update``: a NaN velocity is replaced by the
        position difference, a NaN effort or position rejects the sample; pass None entries in a
        list for samples without efforts). Mismatched lengths raise ValueError.

        Why it is exact: between rejects, gaps, priming and warm-up every accepted sample runs the
        same elementwise operations on values that only depend on the previous accepted sample, and
        the compiled sosfilt kernel filters each channel sample after sample. So a maximal run of
        clean samples is processed as one (5n, T) channel matrix and one kernel call with the
        carried filter state -- the same floating-point operations in the same order as T calls of
        ``update`` (bit-identical results). Everything else (the first samples, rate warm-up,
        rejected samples, resets, the first efforts after a reset, runs shorter than
        ``MIN_BATCH_RUN``) goes through ``update`` itself, the ground truth.
        """
        N = len(stamps)  # type: ignore[arg-type]
        lengths = {'q': q, 'qd': qd, 'tau': tau}
        for name, seq in lengths.items():
            if (seq is not None or name == 'q') and len(seq) != N:  # type: ignore[arg-type]
                raise ValueError(f'update_many: {name} has {len(seq)} entries, '  # type: ignore
                                 f'stamps {N}')
        n = self.n
        out = np.empty((N, 4 * n))                 # columns [q, qd, tau, qdd] (the filter order)
        produced = np.zeros(N, dtype=bool)
        has_tau = np.zeros(N, dtype=bool)
        resets = np.empty(N, dtype=np.int64)
        out_t = np.empty(N)
        if N:
            rows = self._batch_rows(stamps, q, qd, tau, N)
            cfg = self.config
            with np.errstate(all='ignore'):
                # Continuation checks of row k against row k-1: valid inside a run, where row k-1
                # was accepted and is therefore the estimator's previous sample (update's checks).
                dt = np.empty(N)
                dt[0] = np.nan
                np.subtract(rows.t[1:], rows.t[:-1], out=dt[1:])
                v_max = np.zeros(N)
                v_diff = rows.q[1:] - rows.q[:-1]
                v_diff /= dt[1:, None]
                np.abs(v_diff).max(axis=1, initial=0.0, out=v_max[1:])
                cont = rows.row_ok & (dt > 0.0) & (dt <= cfg.max_gap_s)
                cont &= ~(rows.need_diff & (v_max > cfg.max_abs_velocity))
            breaks = np.flatnonzero(~cont)            # cont[0] is False (dt NaN)
            tau_rows = np.flatnonzero(rows.tau_present)
            i = 0
            while i < N:
                end = i + 1
                if self._primed and rows.row_ok[i] and self._starts_run(rows, i):
                    end = min(N, i + MAX_BATCH_RUN)
                    b = np.searchsorted(breaks, i, side='right')
                    if b < len(breaks):
                        end = min(end, int(breaks[b]))
                    if not self._tau_seen:            # the first efforts since a reset prime
                        b = np.searchsorted(tau_rows, i)
                        if b < len(tau_rows):
                            end = min(end, int(tau_rows[b]))
                    end = self._cut_run(rows, i, end)
                    if end - i >= MIN_BATCH_RUN and self._update_run(rows, i, end, out):
                        produced[i:end] = True
                        has_tau[i:end] = rows.tau_present[i:end]
                        resets[i:end] = self.counters['resets']
                        out_t[i:end] = rows.t[i:end]
                        i = end
                        continue
                end = max(end, i + 1)
                for k in range(i, end):               # the ground truth, sample by sample
                    state = self.update(stamps[k], q[k],  # type: ignore[index]
                                        None if qd is None else qd[k],  # type: ignore[index]
                                        None if tau is None else tau[k])  # type: ignore[index]
                    resets[k] = self.counters['resets']
                    if state is not None:
                        produced[k] = True
                        out_t[k] = state.stamp
                        out[k, :n] = state.q
                        out[k, n:2 * n] = state.qd
                        out[k, 3 * n:] = state.qdd
                        if state.tau is not None:
                            has_tau[k] = True
                            out[k, 2 * n:3 * n] = state.tau
                i = end
        index = np.flatnonzero(produced).astype(np.int64)
        sel = out[index]
        tau_out = sel[:, 2 * n:3 * n].copy()
        ht = has_tau[index]
        tau_out[~ht] = np.nan
        return StateBatch(index=index, stamp=out_t[index], q=sel[:, :n].copy(),
                          qd=sel[:, n:2 * n].copy(), qdd=sel[:, 3 * n:].copy(), tau=tau_out,
                          has_tau=ht, resets=resets)

    def _batch_rows(self, stamps: object, q: object, qd: object, tau: object,
                    N: int) -> _BatchRows:
        """Convert the inputs and run ``update``'s sample-local checks on all rows at once."""
        n, cfg = self.n, self.config
        if isinstance(stamps, np.ndarray) and stamps.shape == (N,) and stamps.dtype.kind in 'fiub':
            t = stamps.astype(np.float64)             # the value float() gives each element
        else:                                         # update()'s own conversion, entry by entry
            t = np.full(N, np.nan)                    # NaN: not in a run; update() decides
            for k in range(N):
                try:
                    t[k] = float(stamps[k])  # type: ignore[index]
                except Exception:  # noqa: BLE001
                    pass
        q_arr, q_present, _ = self._batch_vectors(q, N, optional=False)
        qd_arr, qd_present, qd_bad = self._batch_vectors(qd, N, optional=True)
        tau_arr, tau_present, tau_bad = self._batch_vectors(tau, N, optional=True)
        with np.errstate(invalid='ignore'):
            qd_finite = np.isfinite(qd_arr)
            qd_finite &= qd_present[:, None]
            row_ok = np.isfinite(t) & q_present & ~qd_bad & ~tau_bad
            # |x| <= limit is False for NaN, Inf and absurd values alike, as in update()
            row_ok &= (np.abs(q_arr) <= cfg.max_abs_position).all(axis=1)
            row_ok &= ~(qd_finite & ~(np.abs(qd_arr) <= cfg.max_abs_velocity)).any(axis=1)
            tau_abs = np.abs(tau_arr)
            row_ok &= ~tau_present | (tau_abs <= cfg.max_abs_effort).all(axis=1)
            label_bad = np.zeros(N, dtype=bool)
            if self._label_limits is not None:      # update(): the effort goes, the sample stays
                label_bad = tau_present & (tau_abs <= cfg.max_abs_effort).all(axis=1) \
                    & ~(tau_abs <= self._label_limits).all(axis=1)
                tau_present = tau_present & ~label_bad
        return _BatchRows(t=t, q=q_arr, qd=qd_arr, qd_finite=qd_finite,
                          need_diff=~qd_finite.all(axis=1), tau=tau_arr, tau_present=tau_present,
                          row_ok=row_ok, label_bad=label_bad)

    def _batch_vectors(self, seq: object, N: int,
                       optional: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values (N, n), present (N,), malformed (N,)) for N entries as ``_vector`` sees them.

        A sequence numpy converts to (N, n) floats in one go has N well-formed entries (each entry
        converts to its row); anything else is converted entry by entry with ``_vector`` itself.
        """
        n = self.n
        present = np.zeros(N, dtype=bool)
        malformed = np.zeros(N, dtype=bool)
        if seq is None:
            return np.full((N, n), np.nan), present, malformed
        try:
            arr = np.asarray(seq, dtype=np.float64)
            if arr.shape == (N, n):
                present.fill(True)
                return arr, present, malformed
        except Exception:  # noqa: BLE001 - irregular: entry by entry
            pass
        arr = np.full((N, n), np.nan)
        for k in range(N):
            try:
                v = self._vector(seq[k], optional)  # type: ignore[index]
            except Exception:  # noqa: BLE001 - update() will meet (and decide) it itself
                v = False
            if v is None:
                continue
            if v is False:
                malformed[k] = True
            else:
                arr[k] = v
                present[k] = True
        return arr, present, malformed

    def _starts_run(self, rows: _BatchRows, i: int) -> bool:
        """Whether ``update`` would accept row i as a plain steady-state sample (no reset/prime)."""
        dt = rows.t[i] - self._t_prev
        if not 0.0 < dt <= self._fast_dt or self._held_t is not None:
            return False
        if rows.tau_present[i] and not self._tau_seen:
            return False
        if rows.need_diff[i]:
            v_diff = rows.q[i] - self._q_prev
            v_diff /= dt
            if np.abs(v_diff).max() > self.config.max_abs_velocity:
                return False
        return True

    def _cut_run(self, rows: _BatchRows, i: int, end: int) -> int:
        """The end of a clean run from row i (row i starts one) before anything that depends on
        the current rate: a stamp jump (``_check_stamp``) or a block that re-estimates it."""
        ts = rows.t[i:end]
        d = np.empty(end - i)
        d[0] = ts[0] - self._t_prev
        np.subtract(ts[1:], ts[:-1], out=d[1:])
        jumps = np.flatnonzero(d > self._fast_dt)
        if len(jumps):
            end = i + int(jumps[0])
            d = d[:end - i]
        if self._measure:
            k = self._rate.feed(d, commit=False)
            if k is not None:
                end = i + k
        return end

    def _update_run(self, rows: _BatchRows, i: int, end: int, out: np.ndarray) -> bool:
        """Rows i..end-1 (all accepted, steady state) in one kernel call; False changes nothing.

        Every expression is ``update``'s, applied to all rows at once: [q, v, tau] rows with the
        previous accepted row before them, the two-tap means and differences, then the filter.
        """
        n, T = self.n, end - i
        ts = rows.t[i:end]
        qs = rows.q[i:end]
        t_prev = np.empty(T)
        t_prev[0] = self._t_prev
        t_prev[1:] = ts[:-1]
        dt = ts - t_prev
        q_prev = np.empty((T, n))
        q_prev[0] = self._q_prev
        q_prev[1:] = qs[:-1]
        fin = rows.qd_finite[i:end]
        raw = np.empty((T + 1, 3 * n))               # row 0: the previous accepted sample
        raw[0] = self._raw_prev
        cur = raw[1:]
        cur[:, :n] = qs
        with np.errstate(all='ignore'):
            v_diff = qs - q_prev
            v_diff /= dt[:, None]
        np.copyto(cur[:, n:2 * n], np.where(fin, rows.qd[i:end], v_diff))
        tv = np.empty((T + 1, n))
        tv[0] = self._tv_prev
        np.copyto(tv[1:], np.where(fin, ts[:, None], (ts - 0.5 * dt)[:, None]))
        present = rows.tau_present[i:end]
        if present.any():                             # efforts held while a sample has none
            src = np.where(present, np.arange(1, T + 1), 0)
            np.maximum.accumulate(src, out=src)
            taus = np.empty((T + 1, n))
            taus[0] = self._tau_hold
            taus[1:] = rows.tau[i:end]
            cur[:, 2 * n:] = taus[src]
        else:
            cur[:, 2 * n:] = self._tau_hold
        prev = raw[:-1]
        x = np.empty((5 * n, T))                      # the kernel's (channels, time) layout
        xt = x.T
        np.add(cur, prev, out=xt[:, :3 * n])
        xt[:, :3 * n] *= 0.5
        np.subtract(cur[:, n:2 * n], prev[:, n:2 * n], out=xt[:, 3 * n:4 * n])
        np.subtract(tv[1:], tv[:-1], out=xt[:, 4 * n:])
        zi_before = self._zi.copy()
        _filter_inplace(self._sos2, x, self._zi)
        res = out[i:end]
        res[:] = xt[:, :4 * n]
        np.divide(res[:, 3 * n:], np.maximum(xt[:, 4 * n:], self._den_floor), out=res[:, 3 * n:])
        if not np.isfinite(res).all():                # impossible for bounded inputs: let
            self._zi[...] = zi_before                 # update() handle (count, reset) it
            return False
        # ---- commit: the state T update() calls would have left
        counters = self.counters
        counters['accepted'] += T
        counters['velocity_from_positions'] += int(rows.need_diff[i:end].sum())
        counters['rejected_labels'] += int(rows.label_bad[i:end].sum())
        if self._measure:
            self._rate.feed(dt, commit=True)
        self._t_prev = float(ts[-1])
        self._q_prev[:] = qs[-1]
        self._tau_hold[:] = cur[-1, 2 * n:]
        self._raw_prev[:] = cur[-1]
        self._raw[:] = cur[-1]
        self._tv_prev[:] = tv[-1]
        self._tv[:] = tv[-1]
        self._x[:, 0] = x[:, -1]
        return True


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
