"""The closed-loop demo's ROS-free half: phase schedule, recording, metrics and summary.

``invdyn_demo`` (``invdyn_ros/cli/invdyn_demo.py``) drives a simulated arm over real ROS 2 topics
and records what happened into a :class:`DemoRecorder`; everything that turns that record into
numbers lives here so it can be tested with generated data whose answer is known.

Time: every time in this module is *motion time* in simulated seconds, ``t = stamp - t0`` where
``t0`` is the stamp of the first joint state the controller acted on (the trajectory's clock).
invdyn_node receives joint states from ``t = 0`` on and learns from every one of them -- the PD
phase is training data too -- so "seconds of simulated learning" at time ``t`` is ``t``.

Phases (:func:`build_schedule`), in this order:

``pd``        PD only (the controller ignores the learned feedforward; the node learns meanwhile);
``learning``  PD + the node's feedforward while it learns (zeros until the node reports ready);
``learned``   PD + the learned feedforward; it starts when the node has learned for
              ``learning_s`` (default 60 s, PD phase included);
``trajectory`` PD + the *trajectory* feedforward: shortly before the phase the demo sends the
              rest of the same reference as a trajectory_msgs/JointTrajectory (points every
              ``TRAJECTORY_POINT_DT_S``, positions, velocities, accelerations) to invdyn_node's
              ``~/trajectory_in``; the node annotates every point's ``effort`` in one batch
              (``invdyn_ros.trajectory_feedforward``) and publishes ``~/trajectory_out``, which the
              controller consumes like joint_trajectory_controller with an effort interface: the
              points' efforts, linearly interpolated, are added to its PD
              (``sim.controller.TrajectoryFollower``). Compared with ``learned`` (the per-sample
              topic feedforward) on the same motion: ``trajectory_ff_over_topic_ff``;
``ideal``     PD + the true-model feedforward (RNEA with the simulator's own parameters), the
              ceiling;
``payload``   (only with a payload change) PD + learned feedforward; the payload changes
              ``payload_change_after_s`` into the phase, and the prediction error's jump and
              recovery are measured. It comes after ``ideal`` so that PD, learned and ideal are all
              measured with the same payload.

The generalization part (the last ``unseen_s`` seconds, :func:`default_unseen_s`; none when 0):
at the start of ``learned_unseen`` the controller switches to its *unseen* reference (another
seed, ``unseen_speed`` = 1.5x faster -- velocities and accelerations the primary reference never
reaches -- centred elsewhere: poses it never visits), blending into it continuously over its
``ramp_s`` (``sim.trajectory.SwitchedTrajectory``); the blend and a settling time are left out of
the measure window, which spans whole periods of the *unseen* reference (``period_s /
unseen_speed``). invdyn_node keeps learning all the while, as it would on a robot:

``learned_unseen`` PD + the learned feedforward, from the first moment the model sees the new
              motion (so its measure includes the adaptation over the phase);
``pd_unseen``    PD only on the unseen reference;
``ideal_unseen`` PD + the true-model feedforward on it, the ceiling.

Their tracking RMS are ``tracking_rms_<phase>``; ``learned_over_ideal_unseen`` sits beside
``learned_over_ideal``, the same ratio on the primary reference the node learned on. Because the
node adapts during ``learned_unseen``, its window is also given period by period
(``tracking_rms_learned_unseen_by_period``: the first period is the closest to a score of the
model as it was at the switch, the last one the model after adapting;
``learned_over_ideal_unseen_last_period``), with the seconds the node reported itself not ready
after the switch (``node_not_ready_unseen_s``: its feedforward is zeros then, so the loop runs
on PD alone).

Tracking RMS (:func:`tracking_rms`): per joint ``sqrt(mean((q_d - q)^2))`` (rad) over the phase's
*measure window*: the phase minus a settling window after the switch (and minus the reference's
ramp-in for the first phase), trimmed to a whole number of reference periods ending at the phase's
end when at least one period fits. Whole periods matter: the Fourier reference is periodic, so
the phases are compared on exactly the same motion.

Prediction nMSE (:func:`prediction_nmse`): per joint, the MSE of invdyn_node's
``~/predicted_effort`` (its prediction for the measured state) against the torque the simulator
applied at the same stamp, divided by that torque's variance over the same window (``metrics.nmse``
with the window's own mean and std): 0 is perfect, 1 is as good as predicting the mean. The
prediction is made from filtered states, so the filter's delay is part of the error, as it is on
a real robot. It is measured over the learned phase's measure window.

Feedforward error (``feedforward_error_rms_<phase>``, N m): per control step of a phase with
learned feedforward, the feedforward the controller actually applied (zero when it had none)
minus the true-model feedforward for the same reference: the learned model's error where it
matters, in the loop.

learning_seconds: motion time of the node's first ready report (its ``/diagnostics`` value
``ready``; a non-zero feedforward if its diagnostics carry none). The node learns from the first
joint state on, so this is the simulated learning it needed before its feedforward was switched
on. If it never reported ready, the run's duration (a lower bound) and ``ready: false``.

sim_rate_hz: simulator periods per wall second actually achieved (the simulator slows down rather
than skipping when the machine is too busy; 500 at real time).

Size: over 500 lines (the tables are :mod:`invdyn_ros.sim.demo_tables`, the plot
:func:`invdyn_ros.plots.plot_demo_run`) because the schedule, the recorder, the metrics and the
summary schema share the phases' windows and the recorded arrays; not split further this round.
"""
from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from invdyn_ros import metrics
from invdyn_ros.atomic import atomic_write_text
from invdyn_ros.errors import InvdynError
from invdyn_ros.readiness import window_nmse

__all__ = ['DemoError', 'Phase', 'Schedule', 'build_schedule', 'default_unseen_s',
           'UNSEEN_PHASES', 'UNSEEN_SUMMARY_KEYS', 'RecordedRun', 'DemoRecorder',
           'tracking_rms', 'prediction_nmse', 'rolling_nmse', 'payload_change_metrics',
           'build_summary', 'validate_summary', 'format_table', 'format_markdown_table',
           'write_summary', 'save_recording', 'plot_run', 'reference_distance',
           'not_ready_seconds', 'SUMMARY_KEYS',
           'PHASE_MODES']

#: Controller mode (``torque_controller``'s ``mode`` parameter) of each phase.
PHASE_MODES = {'pd': 'pd', 'learning': 'learned', 'learned': 'learned',
               'trajectory': 'trajectory', 'ideal': 'ideal', 'payload': 'learned',
               'learned_unseen': 'learned', 'pd_unseen': 'pd', 'ideal_unseen': 'ideal'}
#: The generalization phases, in order, on the controller's ``unseen`` reference.
UNSEEN_PHASES = ('learned_unseen', 'pd_unseen', 'ideal_unseen')
#: How the time of the unseen part left after the blend and the settling windows is shared
#: (learned : pd : ideal): the default 60 s give 3, 2 and 2 whole periods of the 1.5x faster
#: reference.
UNSEEN_WEIGHTS = (3.0, 2.0, 2.0)
#: Spacing of the trajectory phase's JointTrajectory points (s): bench/trajectory_feedforward.py
#: measured 0.998x the topic feedforward's tracking with 20 ms, 1.043x with 100 ms.
TRAJECTORY_POINT_DT_S = 0.02
#: Keys every summary.json has (the issue's contract); values are finite numbers / lists.
SUMMARY_KEYS = ('tracking_rms_pd', 'tracking_rms_learned', 'tracking_rms_ideal', 'prediction_nmse',
                'learning_seconds', 'sim_rate_hz')
#: Keys every summary of a run with the unseen phases has too (per joint lists, rad) and its ratio.
UNSEEN_SUMMARY_KEYS = ('tracking_rms_learned_unseen', 'tracking_rms_ideal_unseen',
                       'tracking_rms_pd_unseen')
#: Floor of a torque std used to normalise errors (N m): a joint that barely moves must not turn
#: a microscopic error into a huge nMSE.
MIN_TORQUE_STD = 1e-3


class DemoError(InvdynError):
    """The demo cannot produce a valid result (a phase without data, a dead node, ...)."""


# --------------------------------------------------------------------------------------------
# Schedule
@dataclass(frozen=True)
class Phase:
    """One phase: ``[start_s, end_s)`` in motion time, measured over ``[measure_start_s, end_s)``.

    ``whole_periods``: how many whole periods of the phase's reference the measure window spans
    (0: the phase was too short, the window is simply the phase minus the settling time).
    ``reference``: the controller's reference in the phase (``primary`` or ``unseen``).
    """

    name: str
    mode: str
    start_s: float
    end_s: float
    measure_start_s: float
    whole_periods: int
    reference: str = 'primary'

    @property
    def measure_end_s(self) -> float:
        return self.end_s


@dataclass(frozen=True)
class Schedule:
    """The phases in order, the total duration, the payload change (if any) and the switch to the
    unseen reference (if any: ``unseen_start_s``, its period ``unseen_period_s``)."""

    phases: tuple[Phase, ...]
    duration_s: float
    learning_s: float
    period_s: float
    settle_s: float
    payload_change_s: float | None = None
    payload_before_kg: float | None = None
    payload_after_kg: float | None = None
    unseen_start_s: float | None = None
    unseen_period_s: float | None = None
    unseen_speed: float | None = None

    def phase_at(self, t: float) -> Phase:
        """The phase running at motion time ``t`` (the first before 0, the last after the end)."""
        for phase in self.phases:
            if t < phase.end_s:
                return phase
        return self.phases[-1]

    def get(self, name: str) -> Phase | None:
        for phase in self.phases:
            if phase.name == name:
                return phase
        return None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d['phases'] = [dict(asdict(p), measure_end_s=p.measure_end_s) for p in self.phases]
        return d


def _measure_start(start: float, end: float, busy_until: float, settle: float,
                   period: float) -> tuple[float, int]:
    """The start of the measure window of ``[start, end)``: after ``busy_until + settle``, moved
    later to span a whole number of periods ending at ``end`` when one fits, and never later than
    ``start + 0.75 (end - start)`` (a short phase still gets a window)."""
    earliest = max(start, busy_until + settle)
    room = end - earliest
    if period > 0.0 and room >= period - 1e-9:
        k = int(math.floor(room / period + 1e-9))
        return end - k * period, k
    return min(earliest, start + 0.75 * (end - start)), 0


def default_unseen_s(duration_s: float) -> float:
    """The default length of the unseen part of a run of ``duration_s`` seconds: 2/7 of it, at most
    60 s (the default 210 s run: 150 s on the primary reference as before, 60 s unseen)."""
    return min(60.0, duration_s * 2.0 / 7.0)


def build_schedule(duration_s: float, learning_s: float | None = None, *, period_s: float = 10.0,
                   settle_s: float = 2.0, ramp_s: float = 2.0, payload_change: bool = False,
                   payload_before_kg: float = 0.0, payload_after_kg: float | None = None,
                   payload_change_after_s: float | None = None, unseen_s: float = 0.0,
                   unseen_speed: float = 1.5) -> Schedule:
    """The phase schedule for a run of ``duration_s`` simulated seconds.

    The last ``unseen_s`` seconds (default none) are the generalization part, the first
    ``duration_s - unseen_s`` (the *primary* part) are on the primary reference.
    ``learning_s``: seconds of simulated learning before the ``learned`` phase starts (default
    ``min(60, 0.4 primary part)``); the ``pd`` phase takes the first third of it (at least the
    ramp-in plus the settling time plus 1 s when the run is long enough) and ``learning`` the
    rest. The rest of the primary part is split 2:1:1 between ``learned``, ``trajectory`` and
    ``ideal``, or 2:1:1:4
    between ``learned``, ``trajectory``, ``ideal`` and ``payload`` with a payload change (the
    learner needs time to recover). The
    payload changes ``payload_change_after_s`` into its phase (default: one period plus the
    settling time, so a whole period of learned feedforward precedes the change; at most 30 % of
    the phase). The unseen part is ``learned_unseen``, ``pd_unseen``, ``ideal_unseen``: each gets
    its settling time (``learned_unseen`` also the blend, ``ramp_s``) and the rest is shared
    :data:`UNSEEN_WEIGHTS` (all of it is shared so when it is too short for that). Phase
    boundaries are rounded to 10 ms.
    ``period_s``: the primary reference's period (its Fourier base period), ``period_s /
    unseen_speed`` the unseen one's; ``ramp_s``: the ramp-in and the minimum blend.
    """
    for name, value, lo in (('duration', duration_s, 0.0), ('period_s', period_s, 0.0),
                            ('unseen_speed', unseen_speed, 0.0)):
        if not (math.isfinite(value) and value > lo):
            raise DemoError(f'{name}: must be > {lo}, got {value!r}')
    for name, value in (('settle_s', settle_s), ('ramp_s', ramp_s)):
        if not (math.isfinite(value) and value >= 0.0):
            raise DemoError(f'{name}: must be >= 0, got {value!r}')
    if not (math.isfinite(unseen_s) and 0.0 <= unseen_s < duration_s):
        raise DemoError(f'unseen_seconds: must be in [0, duration={duration_s:g}), '
                        f'got {unseen_s!r}')
    primary_s = duration_s - unseen_s
    if learning_s is None:
        learning_s = min(60.0, 0.4 * primary_s)
    if not (math.isfinite(learning_s) and 0.0 < learning_s < primary_s):
        raise DemoError(f'learning_seconds: must be in (0, duration - unseen={primary_s:g}), '
                        f'got {learning_s!r}')

    def r(x: float) -> float:
        return round(float(x), 2)

    pd_end = learning_s / 3.0
    wanted = ramp_s + settle_s + 1.0
    if pd_end < wanted:
        pd_end = min(wanted, 0.75 * learning_s)
    rest = primary_s - learning_s
    weights = (2.0, 1.0, 1.0, 4.0) if payload_change else (2.0, 1.0, 1.0)
    bounds = [0.0, r(pd_end), r(learning_s)]
    acc = learning_s
    for w in weights:
        acc += rest * w / sum(weights)
        bounds.append(r(acc))
    bounds[-1] = r(primary_s)
    names = ['pd', 'learning', 'learned', 'trajectory', 'ideal'] + \
        (['payload'] if payload_change else [])
    unseen_period = period_s / unseen_speed
    if unseen_s > 0.0:
        overhead = (ramp_s + settle_s, settle_s, settle_s)
        spare = unseen_s - sum(overhead)
        lengths = ([o + spare * w / sum(UNSEEN_WEIGHTS) for o, w in zip(overhead, UNSEEN_WEIGHTS)]
                   if spare > 0.0 else [unseen_s * w / sum(UNSEEN_WEIGHTS) for w in UNSEEN_WEIGHTS])
        acc = primary_s
        for length in lengths:
            acc += length
            bounds.append(r(acc))
        bounds[-1] = r(duration_s)
        names += list(UNSEEN_PHASES)

    phases = []
    change_s = None
    for i, name in enumerate(names):
        start, end = bounds[i], bounds[i + 1]
        if end <= start:
            raise DemoError(f'duration: {duration_s:g} s is too short for the {name!r} phase')
        busy = ramp_s if i == 0 else start
        unseen = name in UNSEEN_PHASES
        if name == UNSEEN_PHASES[0]:
            busy = start + ramp_s          # the blend into the unseen reference
        if name == 'payload':
            after = payload_change_after_s
            if after is None:
                after = min(period_s + settle_s, 0.3 * (end - start))
            change_s = r(start + after)
            if not (start < change_s < end):
                raise DemoError('payload_change_after_s: the change must fall inside the payload '
                                f'phase [{start:g}, {end:g}) s')
            # Tracking is measured once the learner had time to recover: the last half.
            busy = start + 0.5 * (end - start) - settle_s
        m0, k = _measure_start(start, end, busy, settle_s, unseen_period if unseen else period_s)
        phases.append(Phase(name, PHASE_MODES[name], start, end, r(m0), k,
                            'unseen' if unseen else 'primary'))
    if payload_change and payload_after_kg is None:
        raise DemoError('payload_after_kg: required with a payload change')
    return Schedule(tuple(phases), float(duration_s), float(learning_s), float(period_s),
                    float(settle_s), change_s,
                    float(payload_before_kg) if payload_change else None,
                    float(payload_after_kg) if payload_change else None,
                    float(primary_s) if unseen_s > 0.0 else None,
                    float(unseen_period) if unseen_s > 0.0 else None,
                    float(unseen_speed) if unseen_s > 0.0 else None)


# --------------------------------------------------------------------------------------------
# Recording
class _Series:
    """A growing (N, width) float64 table with an int64 stamp column (amortised O(1) append)."""

    def __init__(self, width: int, capacity: int = 4096) -> None:
        self.width = width
        self._t = np.zeros(capacity, dtype=np.int64)
        self._x = np.zeros((capacity, width))
        self._n = 0

    def append(self, stamp_ns: int, row) -> None:
        if self._n == self._t.size:
            self._t = np.concatenate([self._t, np.zeros_like(self._t)])
            self._x = np.concatenate([self._x, np.zeros_like(self._x)])
        self._t[self._n] = stamp_ns
        self._x[self._n] = row
        self._n += 1

    def __len__(self) -> int:
        return self._n

    def arrays(self, last: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        lo = 0 if last is None else max(0, self._n - last)
        return self._t[lo:self._n].copy(), self._x[lo:self._n].copy()


@dataclass
class RecordedRun:
    """Everything the summary needs, as plain arrays (times in motion seconds).

    ``t_track, err (N, n)``: the controller's tracking error ``q_d - q`` at each control step.
    ``t_torque, applied (M, n)``: the torque the simulator applied, by joint-state stamp.
    ``t_pred, predicted (K, n)``: invdyn_node's ``~/predicted_effort``, matched to ``applied`` by
    exact stamp (unmatched samples dropped). ``t_ready``: motion time of the node's first ready
    report (None: never). ``wall_s``: wall seconds from the first to the last tick;
    ``ticks``: simulator periods in that time. ``t_ff, ff_used, ff_ideal (F, n), ff_present (F,)``
    (optional): per control step the feedforward applied (zeros when none), the true-model one for
    the same reference, and whether a feedforward was applied at all. ``ready_events``: (motion
    time, ready) at every change of the node's reported state.
    """

    joint_names: tuple[str, ...]
    t_track: np.ndarray
    err: np.ndarray
    t_torque: np.ndarray
    applied: np.ndarray
    t_pred: np.ndarray
    predicted: np.ndarray
    t_ready: float | None
    wall_s: float
    ticks: int
    counters: dict[str, Any] = field(default_factory=dict)
    t_ff: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ff_used: np.ndarray | None = None
    ff_ideal: np.ndarray | None = None
    ff_present: np.ndarray | None = None
    ready_events: list[tuple[float, bool]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.joint_names)

    def applied_at_pred(self) -> np.ndarray:
        """The applied torque at each prediction's stamp (same rows as ``predicted``)."""
        idx = np.searchsorted(self.t_torque, self.t_pred)
        return self.applied[np.clip(idx, 0, max(len(self.t_torque) - 1, 0))]


class DemoRecorder:
    """Collects the run while it happens; thread-safe (ROS callbacks append, the main thread reads).

    Stamps are integer nanoseconds of simulated time; ``t0_ns`` (the controller's first step)
    turns them into motion time. Predictions are kept only when the simulator recorded a torque
    with the same stamp (exact match), so no interpolation blurs the prediction error.
    """

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)
        n = len(self.joint_names)
        self._lock = threading.Lock()
        self._track = _Series(n)
        self._torque = _Series(n)
        self._pred = _Series(n)
        self._ff = _Series(2 * n + 1)   # feedforward used, true-model feedforward, present flag
        self.t0_ns: int | None = None
        self.ready_ns: int | None = None
        self._ready_events: list[tuple[int, bool]] = []
        self.last_stamp_ns: int | None = None
        self._wall_first: float | None = None
        self._wall_last: float | None = None
        self._ticks = 0
        self.counters: dict[str, int] = {'tracking_rejected': 0, 'predictions_rejected': 0,
                                         'torques_rejected': 0, 'feedforward_rejected': 0}

    # ---------------------------------------------------------------- feeding
    def _valid(self, row, key: str) -> np.ndarray | None:
        arr = np.asarray(row, dtype=float).reshape(-1)
        if arr.shape != (len(self.joint_names),) or not np.all(np.isfinite(arr)):
            self.counters[key] += 1
            return None
        return arr

    def add_tracking(self, stamp_ns: int, err) -> None:
        """One control step's ``q_d - q`` (rad); the first call defines motion time 0."""
        arr = self._valid(err, 'tracking_rejected')
        if arr is None:
            return
        with self._lock:
            if self.t0_ns is None:
                self.t0_ns = int(stamp_ns)
            self._track.append(int(stamp_ns), arr)

    def add_torque(self, stamp_ns: int, applied, wall_s: float) -> None:
        """The torque the simulator applied for the state stamped ``stamp_ns`` (one per tick)."""
        arr = self._valid(applied, 'torques_rejected')
        if arr is None:
            return
        with self._lock:
            self._torque.append(int(stamp_ns), arr)
            self.last_stamp_ns = int(stamp_ns)
            if self._wall_first is None:
                self._wall_first = wall_s
            self._wall_last = wall_s
            self._ticks += 1

    def add_feedforward(self, stamp_ns: int, used, ideal, present: bool) -> None:
        """The feedforward the controller applied at a step (zeros when it had none) and the
        true-model feedforward for the same reference: their difference is the learned model's
        error where it matters, in the control loop."""
        used = self._valid(used, 'feedforward_rejected')
        ideal = self._valid(ideal, 'feedforward_rejected')
        if used is None or ideal is None:
            return
        with self._lock:
            self._ff.append(int(stamp_ns), np.concatenate([used, ideal, [float(present)]]))

    def add_prediction(self, stamp_ns: int, predicted) -> None:
        arr = self._valid(predicted, 'predictions_rejected')
        if arr is None:
            return
        with self._lock:
            self._pred.append(int(stamp_ns), arr)

    def mark_ready(self, stamp_ns: int | None = None, ready: bool = True) -> None:
        """The node reported ready (or not); ``None``: at the newest stamp. ``ready_ns`` is the
        first ready report; every change of state is kept in ``ready_events``."""
        with self._lock:
            stamp = stamp_ns if stamp_ns is not None else self.last_stamp_ns
            if stamp is None:
                return
            if ready and self.ready_ns is None:
                self.ready_ns = int(stamp)
            if not self._ready_events or self._ready_events[-1][1] != ready:
                self._ready_events.append((int(stamp), bool(ready)))

    # ---------------------------------------------------------------- reading
    def motion_time(self, stamp_ns: int | None = None) -> float:
        """Motion time (s) of ``stamp_ns`` (default: the newest simulator stamp); 0 before t0."""
        with self._lock:
            stamp = self.last_stamp_ns if stamp_ns is None else stamp_ns
            if stamp is None or self.t0_ns is None:
                return 0.0
            return (stamp - self.t0_ns) * 1e-9

    @property
    def ready(self) -> bool:
        """The node has reported ready at least once."""
        return self.ready_ns is not None

    @property
    def ready_now(self) -> bool:
        """The node's newest report says ready."""
        with self._lock:
            return bool(self._ready_events and self._ready_events[-1][1])

    def sim_rate_hz(self) -> float:
        """Simulator periods per wall second so far (0 until two ticks were recorded)."""
        with self._lock:
            if self._wall_first is None or self._wall_last is None or \
                    self._wall_last <= self._wall_first:
                return 0.0
            return (self._ticks - 1) / (self._wall_last - self._wall_first)

    def recent(self, seconds: float, rate_hz: float) -> dict[str, float]:
        """Live figures over the newest ``seconds``: tracking RMS (mean over joints, rad) and the
        prediction nMSE (mean over joints, normalised by the window's torque std)."""
        k = max(2, int(seconds * rate_hz))
        with self._lock:
            _, err = self._track.arrays(k)
            tt, tau = self._torque.arrays(k + 2 * int(rate_hz))
            tp, pred = self._pred.arrays(k)
        # The torque std over ~10 s, not over the short window itself: over one second a torque
        # hardly varies, and normalising by that would inflate the nMSE.
        with self._lock:
            _, tau_long = self._torque.arrays(int(10 * rate_hz))
        out = {'tracking_rms': float('nan'), 'prediction_nmse': float('nan')}
        if len(err):
            out['tracking_rms'] = float(np.mean(np.sqrt(np.mean(err ** 2, axis=0))))
        if len(tp) >= 10:
            common, ip, it = np.intersect1d(tp, tt, assume_unique=False, return_indices=True)
            if len(common) >= 10:
                std = np.maximum(tau_long.std(axis=0), MIN_TORQUE_STD)
                out['prediction_nmse'] = float(np.mean(metrics.nmse(
                    tau[it], pred[ip], tau[it].mean(axis=0), std)))
        return out

    def snapshot(self, counters: dict[str, Any] | None = None) -> RecordedRun:
        """The run so far as a :class:`RecordedRun` (motion-time seconds)."""
        with self._lock:
            t0 = self.t0_ns
            if t0 is None:
                raise DemoError('no control step was recorded: the controller never acted '
                                '(did the simulator publish /joint_states?)')
            ttr, err = self._track.arrays()
            ttq, tau = self._torque.arrays()
            tp, pred = self._pred.arrays()
            tff, ff = self._ff.arrays()
            ready = self.ready_ns
            events = list(self._ready_events)
            wall = ((self._wall_last - self._wall_first)
                    if self._wall_first is not None and self._wall_last is not None else 0.0)
            ticks = self._ticks
            own = dict(self.counters)
        # Torques sorted by stamp, duplicates removed (a re-delivered message is one sample).
        ttq, first = np.unique(ttq, return_index=True)
        tau = tau[first]
        # Predictions: the newest per stamp, kept only where a torque with that stamp exists.
        tp_rev, last = np.unique(tp[::-1], return_index=True)
        pred = pred[::-1][last]
        keep = np.isin(tp_rev, ttq)
        tp_rev, pred = tp_rev[keep], pred[keep]
        order = np.argsort(ttr, kind='stable')
        n = len(self.joint_names)
        return RecordedRun(
            joint_names=self.joint_names,
            t_track=(ttr[order] - t0) * 1e-9, err=err[order],
            t_torque=(ttq - t0) * 1e-9, applied=tau,
            t_pred=(tp_rev - t0) * 1e-9, predicted=pred,
            t_ready=None if ready is None else (ready - t0) * 1e-9,
            wall_s=float(wall), ticks=int(ticks), counters={**own, **(counters or {})},
            t_ff=(tff - t0) * 1e-9, ff_used=ff[:, :n], ff_ideal=ff[:, n:2 * n],
            ff_present=ff[:, 2 * n] > 0.5,
            ready_events=[((st - t0) * 1e-9, r) for st, r in events])


# --------------------------------------------------------------------------------------------
# Metrics
def _window(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    return (t >= t0) & (t < t1)


def tracking_rms(t: np.ndarray, err: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Per-joint RMS of ``err`` over ``t0 <= t < t1`` (rad); ``DemoError`` for an empty window."""
    sel = _window(np.asarray(t), t0, t1)
    if not np.any(sel):
        raise DemoError(f'no tracking samples between t={t0:g} s and t={t1:g} s')
    return np.sqrt(np.mean(np.square(np.asarray(err)[sel]), axis=0))


def prediction_nmse(applied: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-joint nMSE of ``predicted`` against ``applied`` normalised by ``applied``'s own std over
    the same samples (floored at ``MIN_TORQUE_STD``); see the module docstring."""
    applied, predicted = np.asarray(applied, float), np.asarray(predicted, float)
    if applied.ndim != 2 or len(applied) < 2:
        raise DemoError('prediction_nmse: fewer than 2 matched predictions')
    std = np.maximum(applied.std(axis=0), MIN_TORQUE_STD)
    return metrics.nmse(applied, predicted, applied.mean(axis=0), std)


def rolling_nmse(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray, std: np.ndarray,
                 window_s: float) -> np.ndarray:
    """At each sample, the nMSE (mean over joints, normalised by ``std``) of the samples of the
    preceding ``window_s`` seconds (``(t - window_s, t]``; ``readiness.window_nmse``).
    Time-based (``searchsorted``), so a missing sample does not stretch the window."""
    t = np.asarray(t, float)
    if len(t) == 0:
        return np.zeros(0)
    lo = np.searchsorted(t, t - window_s, side='right')
    hi = np.arange(1, len(t) + 1)
    return window_nmse(np.asarray(predicted, float) - np.asarray(applied, float),
                       np.square(np.maximum(np.asarray(std, float), MIN_TORQUE_STD)), lo, hi)


def _nmse_over(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray, std: np.ndarray,
               t0: float, t1: float) -> float:
    sel = _window(t, t0, t1)
    if not np.any(sel):
        return float('nan')
    return float(np.mean(np.square((predicted[sel] - applied[sel]) / std)))


def payload_change_metrics(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray,
                           t_change: float, period_s: float, *, threshold: float = 1.5,
                           jump_window_s: float = 2.0) -> dict[str, Any]:
    """The prediction error's jump at a payload change and how long the learner takes to recover.

    All nMSEs are normalised by the per-joint torque std of the period before the change (the same
    scale before and after) and averaged over joints. Why whole periods: along the periodic
    reference the error varies by orders of magnitude from one part of the motion to another, so
    only like-for-like windows can be compared.

    ``pre_change_nmse``: over the reference period before the change. ``jump``: the nMSE of the
    first ``jump_window_s`` after the change over that of the same part of the motion one period
    earlier. ``recovery_s``: the time from the change until the nMSE over the trailing period
    (``rolling_nmse`` with a period-long window, all samples after the change) is back below
    ``threshold`` x the pre-change level; None when not within the run (``recovered`` says which).
    Its resolution is one period: it is never below ``period_s``.
    """
    t = np.asarray(t, float)
    applied, predicted = np.asarray(applied, float), np.asarray(predicted, float)
    pre = _window(t, t_change - period_s, t_change)
    post = t >= t_change
    if np.count_nonzero(pre) < 10 or np.count_nonzero(post) < 10:
        raise DemoError('payload change: too few matched predictions around the change')
    std = np.maximum(applied[pre].std(axis=0), MIN_TORQUE_STD)
    pre_level = _nmse_over(t, applied, predicted, std, t_change - period_s, t_change)
    before = _nmse_over(t, applied, predicted, std, t_change - period_s,
                        t_change - period_s + jump_window_s)
    after = _nmse_over(t, applied, predicted, std, t_change, t_change + jump_window_s)
    roll = rolling_nmse(t, applied, predicted, std, period_s)
    cand = np.flatnonzero(post & (t >= t_change + period_s - 1e-9))
    ok = cand[roll[cand] < threshold * max(pre_level, 1e-12)]
    recovery = float(t[ok[0]] - t_change) if len(ok) else None
    post_idx = np.flatnonzero(post)
    return {
        'time_s': float(t_change),
        'pre_change_nmse': pre_level,
        'nmse_after_change': after,
        'nmse_same_motion_before': before,
        'jump': float(after / before) if math.isfinite(before) and before > 0 else 0.0,
        'peak_period_nmse': float(np.max(roll[cand])) if len(cand) else after,
        'threshold': float(threshold),
        'recovered': recovery is not None,
        'recovery_s': recovery,
        'final_period_nmse': float(roll[post_idx[-1]]),
        'period_s': float(period_s),
    }


# --------------------------------------------------------------------------------------------
# Summary
def _finite_list(x) -> list[float]:
    arr = np.asarray(x, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise DemoError(f'non-finite value in a result: {arr}')
    return [float(v) for v in arr]


def build_summary(run: RecordedRun, schedule: Schedule, *, rate_hz: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's content (see the module docstring for the definitions).

    ``learning_seconds``: motion time of the node's first ready report -- the node learns from the
    first joint state on, so this is the simulated learning it needed. If it never reported ready
    it is the run's duration (a lower bound) and ``ready`` is false.
    ``sim_rate_hz``: simulator periods per wall second actually achieved (``rate_hz`` = real time).
    """
    rms = {}
    for phase in schedule.phases:
        rms[phase.name] = tracking_rms(run.t_track, run.err, phase.measure_start_s, phase.end_s)
    learned = schedule.get('learned')
    sel = _window(run.t_pred, learned.measure_start_s, learned.end_s)
    applied_pred = run.applied_at_pred()
    if np.count_nonzero(sel) < 2:
        raise DemoError('no ~/predicted_effort from invdyn_node during the learned phase (is the '
                        'node publishing, and on the same ROS domain?)')
    pred_nmse = prediction_nmse(applied_pred[sel], run.predicted[sel])
    sim_rate = run.ticks / run.wall_s if run.wall_s > 0 and run.ticks > 1 else 0.0
    ready = run.t_ready is not None
    mean = {k: float(np.mean(v)) for k, v in rms.items()}
    summary: dict[str, Any] = {
        'tracking_rms_pd': _finite_list(rms['pd']),
        'tracking_rms_learned': _finite_list(rms['learned']),
        'tracking_rms_ideal': _finite_list(rms['ideal']),
        'prediction_nmse': _finite_list(pred_nmse),
        'learning_seconds': float(run.t_ready) if ready else float(schedule.duration_s),
        'sim_rate_hz': float(sim_rate),
        'ready': ready,
        'joint_names': list(run.joint_names),
        'units': {'tracking_rms': 'rad', 'prediction_nmse': '1', 'learning_seconds': 's (sim)',
                  'sim_rate_hz': 'simulated periods per wall second'},
        'tracking_rms_learning': _finite_list(rms['learning']),
        'tracking_rms_mean': mean,
        'improvement_vs_pd': 1.0 - mean['learned'] / mean['pd'] if mean['pd'] > 0 else 0.0,
        'learned_over_ideal': mean['learned'] / mean['ideal'] if mean['ideal'] > 0 else 0.0,
        'prediction_nmse_mean': float(np.mean(pred_nmse)),
        'real_time_factor': float(sim_rate / rate_hz) if rate_hz > 0 else 0.0,
        'rate_hz': float(rate_hz),
        'wall_seconds': float(run.wall_s),
        'schedule': schedule.as_dict(),
        'node_ready_events': [[round(float(t), 3), bool(r)] for t, r in run.ready_events],
        'counters': run.counters,
    }
    summary['targets'] = {
        'cut_pd_by_50pct': bool(summary['improvement_vs_pd'] >= 0.5),
        'within_2x_ideal': bool(summary['learned_over_ideal'] <= 2.0),
        'learned_phase_starts_at_s': float(learned.start_s),
    }
    if 'trajectory' in rms:
        summary['tracking_rms_trajectory_ff'] = _finite_list(rms['trajectory'])
        ratio = mean['trajectory'] / mean['learned'] if mean['learned'] > 0 else 0.0
        summary['trajectory_ff_over_topic_ff'] = float(ratio)
        summary['targets']['trajectory_ff_within_1.2x_topic_ff'] = bool(ratio <= 1.2)
    if run.ff_used is not None and len(run.t_ff):
        for phase in schedule.phases:
            if phase.mode not in ('learned', 'trajectory'):
                continue
            sel = _window(run.t_ff, phase.measure_start_s, phase.end_s)
            if np.any(sel):
                diff = run.ff_used[sel] - run.ff_ideal[sel]
                summary[f'feedforward_error_rms_{phase.name}'] = _finite_list(
                    np.sqrt(np.mean(diff ** 2, axis=0)))
                summary[f'feedforward_missing_fraction_{phase.name}'] = float(
                    1.0 - np.mean(run.ff_present[sel]))
        summary['units']['feedforward_error_rms'] = 'N m (learned minus true-model feedforward)'
    if 'payload' in rms:
        summary['tracking_rms_payload'] = _finite_list(rms['payload'])
    if all(name in rms for name in UNSEEN_PHASES):
        _add_unseen(summary, run, schedule, rms, mean, applied_pred)
    if schedule.payload_change_s is not None:
        phase = schedule.get('payload')
        sel = run.t_pred >= phase.start_s
        change = payload_change_metrics(run.t_pred[sel], applied_pred[sel], run.predicted[sel],
                                        schedule.payload_change_s, schedule.period_s)
        ready_again = [t for t, ready in run.ready_events
                       if ready and t > schedule.payload_change_s]
        lost = [t for t, ready in run.ready_events if not ready and t >= schedule.payload_change_s]
        change['node_not_ready_after_s'] = (float(lost[0] - schedule.payload_change_s)
                                            if lost else None)
        change['node_ready_again_after_s'] = (
            float(ready_again[0] - schedule.payload_change_s)
            if ready_again and lost and ready_again[0] > lost[0] else None)
        change.update(before_kg=schedule.payload_before_kg, after_kg=schedule.payload_after_kg,
                      tracking_rms_after=_finite_list(rms['payload']))
        summary['payload_change'] = change
    if extra:
        summary.update(extra)
    return summary


def _add_unseen(summary: dict[str, Any], run: RecordedRun, schedule: Schedule,
                rms: dict[str, np.ndarray], mean: dict[str, float],
                applied_pred: np.ndarray) -> None:
    """The generalization part's results (module docstring), beside the primary reference's."""
    for name in UNSEEN_PHASES:
        summary[f'tracking_rms_{name}'] = _finite_list(rms[name])
    ideal, pd = mean['ideal_unseen'], mean['pd_unseen']
    summary['learned_over_ideal_unseen'] = mean['learned_unseen'] / ideal if ideal > 0 else 0.0
    summary['improvement_vs_pd_unseen'] = 1.0 - mean['learned_unseen'] / pd if pd > 0 else 0.0
    summary['targets']['within_2x_ideal_unseen'] = bool(summary['learned_over_ideal_unseen'] <= 2.0)
    phase = schedule.get(UNSEEN_PHASES[0])
    sel = _window(run.t_pred, phase.measure_start_s, phase.end_s)
    if np.count_nonzero(sel) >= 2:
        summary['prediction_nmse_unseen'] = _finite_list(
            prediction_nmse(applied_pred[sel], run.predicted[sel]))
    if phase.whole_periods >= 1:
        period = schedule.unseen_period_s
        by_period = [_finite_list(tracking_rms(run.t_track, run.err,
                                               phase.measure_start_s + k * period,
                                               phase.measure_start_s + (k + 1) * period))
                     for k in range(phase.whole_periods)]
        summary['tracking_rms_learned_unseen_by_period'] = by_period
        summary['learned_over_ideal_unseen_last_period'] = (
            float(np.mean(by_period[-1])) / ideal if ideal > 0 else 0.0)
    summary['node_not_ready_unseen_s'] = not_ready_seconds(run.ready_events, phase.start_s,
                                                           schedule.duration_s)


def not_ready_seconds(events: Sequence[tuple[float, bool]], t0: float, t1: float) -> float:
    """Seconds of ``[t0, t1)`` during which the node's newest report (``events``: (time, ready) at
    every change, in order) said not ready; before its first report it counts as not ready."""
    total, state, since = 0.0, False, t0
    for t, ready in events:
        if t >= t1:
            break
        if t > since:
            if not state:
                total += t - since
            since = t
        state = bool(ready)
    if not state:
        total += max(0.0, t1 - since)
    return float(total)


def reference_distance(primary_q: np.ndarray, unseen_q: np.ndarray) -> dict[str, float]:
    """How far the unseen reference's poses are from the primary one's (rad, joint space): for each
    unseen sample the distance to the nearest primary sample; its median and maximum, and the
    same figure for the primary against itself (half a sample apart: what "on the learned
    motion" means at this sampling). Pass one period of each, densely sampled."""
    primary_q, unseen_q = np.asarray(primary_q, float), np.asarray(unseen_q, float)

    def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(np.min(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1), axis=1))

    d = nearest(unseen_q, primary_q[::2])
    own = nearest(primary_q[1::2], primary_q[::2])
    return {'median_rad': float(np.median(d)), 'max_rad': float(np.max(d)),
            'primary_self_median_rad': float(np.median(own))}


def save_recording(path: str | os.PathLike, run: RecordedRun) -> None:
    """The run's per-step arrays as a compressed ``.npz`` (float32; times in motion seconds), for
    looking into what happened at a given moment (keys as :class:`RecordedRun`'s fields)."""
    arrays: dict[str, np.ndarray] = {
        't_track': run.t_track, 'err': run.err, 't_torque': run.t_torque, 'applied': run.applied,
        't_pred': run.t_pred, 'predicted': run.predicted, 't_ff': run.t_ff,
        'joint_names': np.asarray(run.joint_names),
        'ready_events': np.asarray(run.ready_events, dtype=float).reshape(-1, 2)}
    for name in ('ff_used', 'ff_ideal', 'ff_present'):
        value = getattr(run, name)
        if value is not None:
            arrays[name] = value
    np.savez_compressed(os.fspath(path), **{
        k: (v.astype(np.float32) if v.dtype.kind == 'f' and not k.startswith('t') else v)
        for k, v in arrays.items()})


def validate_summary(summary: dict[str, Any], n_joints: int) -> None:
    """Raise ``DemoError`` unless ``summary`` has every key of the contract with finite numbers
    (per-joint lists of length ``n_joints``): :data:`SUMMARY_KEYS`, and when its schedule has the
    unseen phases :data:`UNSEEN_SUMMARY_KEYS` and ``learned_over_ideal_unseen`` too."""
    phases = {p.get('name') for p in summary.get('schedule', {}).get('phases', [])
              if isinstance(p, dict)}
    unseen = bool(phases & set(UNSEEN_PHASES))
    lists = SUMMARY_KEYS[:4] + (UNSEEN_SUMMARY_KEYS if unseen else ())
    numbers = SUMMARY_KEYS[4:] + (('learned_over_ideal_unseen',) if unseen else ())
    for key in lists + numbers:
        if key not in summary:
            raise DemoError(f'summary: missing key {key!r}')
    for key in lists:
        value = summary[key]
        if not isinstance(value, list) or len(value) != n_joints:
            raise DemoError(f'summary: {key} must be a list of {n_joints} numbers, got {value!r}')
        _finite_list(value)
    for key in numbers:
        value = summary[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value):
            raise DemoError(f'summary: {key} must be a finite number, got {value!r}')


def write_summary(path: str | os.PathLike, summary: dict[str, Any]) -> None:
    """Atomically write ``summary`` as JSON (NaN/Inf refused: ``allow_nan=False``)."""
    text = json.dumps(summary, indent=2, allow_nan=False, default=_json_default)
    atomic_write_text(path, text + '\n')


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f'not JSON serialisable: {type(obj).__name__}')


# --------------------------------------------------------------------------------------------
# Table: in demo_tables.py (re-exported here)
from invdyn_ros.sim.demo_tables import format_markdown_table, format_table  # noqa: E402,F401


# --------------------------------------------------------------------------------------------
# Plot: drawn by :func:`invdyn_ros.plots.plot_demo_run`; imported lazily so that importing this
# module does not import matplotlib.
def plot_run(run: RecordedRun, schedule: Schedule, path: str | os.PathLike,
             summary: dict[str, Any] | None = None) -> None:
    """See :func:`invdyn_ros.plots.plot_demo_run`."""
    from invdyn_ros.plots import plot_demo_run
    plot_demo_run(run, schedule, path, summary)
