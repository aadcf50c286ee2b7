"""Streaming state estimation: joint samples -> filtered, equally delayed (q, qd, qdd, tau).

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
  per call, the compiled kernel ~2 us, see :func:`invdyn_ros.stages.filters.filter_inplace`).
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
``qdd``, finiteness) are two compiled calls (:mod:`invdyn_ros.stages.kernels`, same operations in
the same order, no fastmath: bit-identical) when numba is installed; numpy / scipy otherwise.

Replay: :meth:`StreamingEstimator.update_many` gives exactly (bit for bit) what ``update`` gives
sample by sample, ~25x faster on clean data; it lives in :mod:`invdyn_ros.stages.estimation_batch`
(with :class:`StateBatch`), which finds the runs of clean steady-state samples, filters each as
one (5n, T) channel matrix, and hands every other sample to ``update``: the rules stay here.

What lives where: this module holds the one-sample chain and every rule of the stage (range
checks, stamp order, gaps and resets, held-back stamps, priming, label limits). The rate rule is
:mod:`invdyn_ros.stages.rate`; the filter design, its delay and its in-place run
:mod:`invdyn_ros.stages.filters`; the many-sample form :mod:`invdyn_ros.stages.estimation_batch`;
the zero-phase form for recorded arrays (:func:`estimate_offline`)
:mod:`invdyn_ros.stages.estimation_offline`. This module re-exports the names users import from it
(``FilterConfig``, ``StateBatch``, ``estimate_offline``, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.signal

from invdyn_ros.errors import ConfigError
from invdyn_ros.stages import filters, kernels
from invdyn_ros.stages.estimation_offline import estimate_offline
from invdyn_ros.stages.filters import FilterConfig, cutoff_error, design_filter, filter_delay_s
from invdyn_ros.stages.rate import (BURST_FRACTION, MISSED_BASE_FRACTION, RATE_BLOCK,  # noqa: F401
                                    RATE_BLOCK_SHORT, RATE_TOLERANCE, SETTLE_BLOCKS,
                                    WARMUP_INTERVALS, RateEstimator, robust_period)

if TYPE_CHECKING:
    from invdyn_ros.stages.estimation_batch import StateBatch

__all__ = ['FilterConfig', 'State', 'StateBatch', 'StreamingEstimator', 'estimate_offline',
           'filter_delay_s', 'design_filter', 'cutoff_error', 'robust_period']


def __getattr__(name: str) -> object:
    """``StateBatch`` lives in :mod:`invdyn_ros.stages.estimation_batch`, which imports this module,
    so it is re-exported on first use instead of by an import here (``from
    invdyn_ros.stages.estimation import StateBatch`` keeps working). Nothing else is forwarded: a
    patch of a name that moved there (``MIN_BATCH_RUN``) must fail here, not silently set a name
    nobody reads."""
    if name == 'StateBatch':
        from invdyn_ros.stages.estimation_batch import StateBatch  # noqa: PLC0415
        return StateBatch
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

#: A stamp more than this many nominal periods (but at most ``max_gap_s``) ahead of the previous
#: one is held back: if the next sample continues the old time axis, the held one was an outlier
#: (dropped, counted ``dropped_future_stamp``); if the next one is after it, the jump was real
#: (``stamp_jumps``) and the time axis moves (one sample lost). One bad stamp then drops one
#: sample instead of every genuine sample until the stream catches up with it. (Beyond
#: ``max_gap_s`` the filter resets at the new stamp as before, and a genuine sample after an
#: outlier resets it back: nothing genuine is dropped there.)
FUTURE_JUMP_PERIODS = 5.0


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

        filters.filter_inplace(self._sos2, self._x, self._zi)
        out[:] = x[:4 * n]
        np.divide(out[3 * n:], np.maximum(x[4 * n:], self._den_floor), out=out[3 * n:])
        return bool(np.isfinite(out).all())

    # ------------------------------------------------------------------ batch entry
    def update_many(self, stamps: object, q: object, qd: object = None,
                    tau: object = None) -> StateBatch:
        """Feed N samples; the same States, counters and final state as N calls of :meth:`update`
        (bit for bit; :mod:`invdyn_ros.stages.estimation_batch` says how and why).

        stamps: N stamps; q: N entries; qd, tau: None or N entries, each entry what ``update``
        takes (malformed ones are rejected and counted the same way). 2-D float arrays (N, n) are
        the fast path; NaN rows are allowed (as in ``update``: a NaN velocity is replaced by the
        position difference, a NaN effort or position rejects the sample; pass None entries in a
        list for samples without efforts). Mismatched lengths raise ValueError.
        """
        from invdyn_ros.stages.estimation_batch import update_many  # noqa: PLC0415 - it imports us
        return update_many(self, stamps, q, qd, tau)
