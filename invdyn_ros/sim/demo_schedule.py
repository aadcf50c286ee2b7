"""The demo's phase schedule: which controller mode runs when, and each phase's measure window.

:func:`build_schedule` lays out the phases of :mod:`invdyn_ros.sim.demo` (its docstring: the
phases, the unseen part, the measure windows over whole reference periods) in *motion time*
(simulated seconds from the first control step); :class:`Schedule` answers which phase runs at
``t``. ROS-free.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from invdyn_ros.errors import InvdynError

__all__ = ['DemoError', 'Phase', 'Schedule', 'build_schedule', 'default_unseen_s', 'PHASE_MODES',
           'UNSEEN_PHASES', 'UNSEEN_WEIGHTS', 'TRAJECTORY_POINT_DT_S']

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


class DemoError(InvdynError):
    """The demo cannot produce a valid result (a phase without data, a dead node, ...)."""


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
