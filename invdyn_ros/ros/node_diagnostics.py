"""The node's ``/diagnostics`` status as a pure function of a plain stats snapshot (no ROS).

:func:`statuses` turns a :class:`Snapshot` (the node's counters, ``Pipeline.stats()``, the
latencies of the period, the lifecycle / staleness / checkpoint state) into the list of
:class:`Status` (name, level, message, key/values); the node only converts them to
``diagnostic_msgs/DiagnosticStatus`` and publishes. :class:`WarningThrottle` decides the log lines
of a period (bad input counts that grew, a re-estimated rate, a filter error: each once);
:class:`LatencyRing` keeps the callback latencies between two reports.

Levels, first match wins: ERROR trainer failed, ERROR filter error; WARN checkpoint failed, WARN
inactive (lifecycle), WARN no valid joint states (stale), WARN learning (not ready); OK ready.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from invdyn_ros.stages.joint_state import COUNTERS as JS_COUNTERS

OK, WARN, ERROR = 0, 1, 2      # diagnostic_msgs/DiagnosticStatus levels
LATENCY_RING = 1 << 14          # callback latencies kept for the diagnostics percentiles


class Status(NamedTuple):
    name: str
    hardware_id: str
    level: int                                   # OK / WARN / ERROR
    message: str
    values: list[tuple[str, Any]]                # (key, value); the node publishes str(value)


@dataclass
class Snapshot:
    """What one diagnostics period reports (plain Python / numpy values)."""
    node_name: str
    joint_names: list[str]
    counters: dict[str, int]                     # the node's counters
    stats: dict[str, Any]                        # Pipeline.stats()
    input_rate_hz: float                         # joint states received per second this period
    latencies_us: tuple = ()                     # (wall, cpu, hand-off, from-reception) arrays
    latency_count: int = 0
    active: bool = True                          # lifecycle
    stale: bool = False                          # no valid joint state for stale_timeout_s
    filter_error: str | None = None
    checkpoint_failed: str | None = None
    last_checkpoint: str = 'none yet'
    trainer_kind: str = ''
    scheduling: str = 'normal'
    prior: str = 'none'
    feedforward_mode: str = 'total'
    buffer_capacity: int = 0
    trajectory: list[tuple[str, Any]] = field(default_factory=list)


#: A larger "lost messages" change is a wrapped-around or garbage report, not a count
LOST_CHANGE_MAX = 2 ** 31


def node_counters() -> dict[str, int]:
    """The node's own counters, all zero (``Snapshot.counters``; :func:`statuses` reads them)."""
    return {'received': 0, 'outputs': 0, **dict.fromkeys(JS_COUNTERS, 0), 'internal_errors': 0,
            'lost': 0, 'lost_reports_ignored': 0, 'missed_by_stamp_gap': 0, 'references': 0,
            'stale_events': 0, 'feedforward_zero': 0, 'feedforward_measured': 0,
            'feedforward_prior': 0, 'feedforward_reference': 0}


def count_lost(counters: dict[str, int], info: Any) -> None:
    """Add a middleware report of lost messages (``QoSMessageLostInfo``) to ``counters``. The
    change is an unsigned count: a garbage or wrapped-around value (seen:
    18446744075857035401) is not added but counted as an ignored report, so ``lost`` stays a
    plain, believable int."""
    try:
        change = int(getattr(info, 'total_count_change', 1))
    except (TypeError, ValueError, OverflowError):
        change = -1
    if 0 < change <= LOST_CHANGE_MAX:
        counters['lost'] += change
    else:
        counters['lost_reports_ignored'] += 1


def rejected_counts(counters: dict[str, int], stats: dict[str, Any]) -> dict[str, int]:
    """Bad input and missed samples by reason: the node's JointState rule, the estimator's and
    the pipeline's counters (what the throttled warning and the key/values report)."""
    c, est, pipe = counters, stats['estimator'], stats['pipeline']
    return {
        'rejected_names': c['rejected_names'], 'rejected_shape': c['rejected_shape'],
        'rejected_stamp': c['rejected_stamp'],
        'rejected_nonfinite': c['rejected_nonfinite'] + est['rejected_nonfinite'],
        'rejected_magnitude': est['rejected_magnitude'],
        'rejected_shape_estimator': est['rejected_shape'],
        'dropped_stamp': est['dropped_stamp'],
        'rejected_references': pipe['rejected_references'],
        'internal_errors': c['internal_errors'],
        'missed_by_stamp_gap': c['missed_by_stamp_gap'],
        'rejected_labels': est['rejected_labels'],
        'dropped_future_stamp': est['dropped_future_stamp'],
        'lost_reports_ignored': c['lost_reports_ignored'],
    }


def bad_input_warning(new_bad: dict[str, int], reasons: dict[str, str]) -> str:
    """The throttled warning: counts that grew in the period, with the reason of the latest
    rejection of each of THOSE counters (a reason of a counter that did not grow is stale)."""
    last = '; '.join(f'{k}: {reasons[k]}' for k in new_bad if reasons.get(k))
    return (f'dropped bad input / missed samples in the last period: {new_bad}'
            + (f' (last: {last})' if last else ''))


def latency_values(lat: np.ndarray, cpu: np.ndarray, hand: np.ndarray, recv: np.ndarray,
                   count: int) -> list[tuple[str, Any]]:
    """Percentiles (µs) of the period's latencies (NaN arrays when there were none); ``recv``
    may hold NaN where the RMW gives no reception time (left out of its percentiles)."""
    p50, p99 = np.percentile(lat, [50, 99])
    h50, h99 = np.percentile(hand, [50, 99])
    recv = recv[np.isfinite(recv)]
    r50, r99 = np.percentile(recv, [50, 99]) if recv.size else (math.nan, math.nan)
    rmax = float(recv.max()) if recv.size else math.nan
    pmax = float(lat.max())
    c50, c99 = np.percentile(cpu, [50, 99])
    return [('callback_latency_p50_us', f'{p50:.1f}'),
            ('callback_latency_p99_us', f'{p99:.1f}'),
            ('callback_latency_max_us', f'{pmax:.1f}'),
            ('callback_cpu_p50_us', f'{c50:.1f}'),
            ('callback_cpu_p99_us', f'{c99:.1f}'),
            ('callback_handoff_p50_us', f'{h50:.1f}'),
            ('callback_handoff_p99_us', f'{h99:.1f}'),
            ('reception_latency_p50_us', f'{r50:.1f}'),
            ('reception_latency_p99_us', f'{r99:.1f}'),
            ('reception_latency_max_us', f'{rmax:.1f}'),
            ('latency_samples', count)]


def level_message(s: Snapshot) -> tuple[int, str]:
    """The status level and message (the module docstring's order)."""
    if s.stats['trainer_error']:
        return ERROR, 'trainer failed'
    if s.filter_error:
        return ERROR, s.filter_error
    if s.checkpoint_failed is not None:
        return WARN, 'checkpoint failed (the previous one is kept)'
    if not s.active:
        return WARN, 'inactive (lifecycle): feedforward is zero'
    if s.stale:
        return WARN, 'no valid joint states'
    if not s.stats['ready']:
        return WARN, 'learning (feedforward is zero until ready)'
    return OK, 'ready'


def _physics_values(phys: dict[str, Any] | None, joint_names: list[str]) -> list:
    if not phys:
        return []
    par = phys['parameters']
    values = [('physics.residual_trust', round(phys['trust'], 3)),
              ('physics.visited_states', phys['visited']),
              ('physics.prior_error_rms', ','.join(f'{v:.3g}' for v in phys['prior_error_rms'])),
              ('physics.residual_error_rms',
               ','.join(f'{v:.3g}' for v in phys['residual_error_rms'])),
              ('physics.residual_gate', ','.join(str(int(g)) for g in phys['residual_gate'])),
              ('physics.max_relative_parameter_change', round(par['max_relative_change'], 3)),
              ('physics.coulomb_velocity', f"{par['coulomb_velocity']:.3g} rad/s")]
    values += [(f'physics.{j}', f"mass {par[j]['mass']:.3f} kg, viscous {par[j]['viscous']:.3g}, "
                                f"coulomb {par[j]['coulomb']:.3g}, offset {par[j]['offset']:.3g}")
               for j in joint_names]
    if 'identification' in phys:
        values.append(('physics.identification', phys['identification']))
    if 'identification_weights' in phys:
        values.append(('physics.identification_weights',
                       ','.join(f'{w:.3g}' for w in phys['identification_weights'])))
    return values


def _learner_values(learners: Any, capacity: int) -> list:
    values: list[tuple[str, Any]] = []
    for name, s in (learners.items() if isinstance(learners, dict) else ()):
        if not isinstance(s, dict):
            continue
        values += [(f'{name}.buffer_fill', f'{s.get("buffer", 0)}/{capacity}'),
                   (f'{name}.training_loss', s.get('loss')),
                   (f'{name}.recent_nmse', s.get('recent_nmse')),
                   (f'{name}.samples', s.get('samples')), (f'{name}.steps', s.get('steps')),
                   (f'{name}.learning_rate', s.get('lr')),
                   (f'{name}.rollbacks', s.get('rollbacks'))]
    return values


def statuses(s: Snapshot) -> list[Status]:
    """The diagnostics of one period: one status for the node (name, level, message, values)."""
    stats, c = s.stats, s.counters
    est, pipe = stats['estimator'], stats['pipeline']
    nan = np.array([math.nan])
    lat = s.latencies_us if s.latency_count > 0 else (nan, nan, nan, nan)
    values: list[tuple[str, Any]] = [
        ('input_rate_hz', f'{s.input_rate_hz:.1f}'),
        *latency_values(*lat, s.latency_count),
        ('received', c['received']), ('outputs', c['outputs']),
        ('references_received', c['references']),
        ('reference_predictions', pipe['reference_outputs']),
        ('reference_restarts', pipe['reference_restarts']),
        ('lost_by_dds', c['lost']),
        *rejected_counts(c, stats).items(),
        ('dropped_by_trainer_queue', stats['trainer'].get('dropped', 0)),
        ('dropped_nonfinite_outputs', pipe['dropped_nonfinite']),
        ('stream_resets', est['resets']),
        ('ready', stats['ready']),
        # the input stamp (s) of the sample that made the prediction ready: to the sample, not
        # to this report's period
        ('ready_since', '' if stats.get('ready_since') is None
         else f"{stats['ready_since']:.3f}"),
        ('recent_nmse', stats['recent_nmse']),
        ('active_networks', ','.join(stats['active'])),
        ('identifier_switches', ','.join(str(k) for k in stats['identifier_switches'])),
        ('weights_version', stats['weights_version']),
        ('filter_delay_ms', None if stats['filter_delay_s'] is None
         else round(1e3 * stats['filter_delay_s'], 3)),
        ('rate_hz_estimated', None if stats['rate_hz'] is None else round(stats['rate_hz'], 2)),
        ('rate_changes', est['rate_changes']), ('stamp_jumps', est['stamp_jumps']),
        ('filter_error', s.filter_error or ''),
        ('stale_input', s.stale), ('stale_events', c['stale_events']),
        ('lifecycle_active', s.active),
        ('feedforward_zero', c['feedforward_zero']),
        ('feedforward_measured', c['feedforward_measured']),
        ('feedforward_reference', c['feedforward_reference']),
        ('feedforward_prior', c['feedforward_prior']),
        ('prior_ready', '' if stats.get('prior_ready') is None else stats['prior_ready']),
        *s.trajectory,
        ('trainer', s.trainer_kind),
        ('scheduling', s.scheduling),
        ('trainer_error', stats['trainer_error'] or ''),
        ('checkpoint', s.last_checkpoint),
        ('prior', s.prior),
        ('feedforward_mode', s.feedforward_mode),
        *_physics_values(stats.get('physics'), s.joint_names),
        *_learner_values(stats['learners'], s.buffer_capacity),
    ]
    level, message = level_message(s)
    return [Status(f'{s.node_name}: inverse dynamics learner', ','.join(s.joint_names), level,
                   message, values)]


class LatencyRing:
    """The callback latencies of the last ``size`` outputs (s), read once per period in µs.

    Wall time from callback entry until ``publish()`` returned is what the budget is about;
    the hand-off time stops when ``publish()`` is called (the rest is Fast DDS delivering the
    message, ~45-50 µs to a subscriber in another process here); CPU time
    (``time.thread_time``) is the code's own cost, without the time the thread waited for a
    core; from-reception starts at the middleware's reception timestamp of the input
    (``MessageInfo.received_timestamp``, NaN where the RMW does not provide it), so it adds
    the executor's wake-up, take and deserialization in front of the callback."""

    def __init__(self, size: int = LATENCY_RING) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f'size must be a power of two, got {size}')
        self.size = size
        self.wall, self.cpu, self.hand, self.recv = (np.zeros(size) for _ in range(4))
        self.count = 0              # recorded in all
        self.reported = 0           # of them taken

    def record(self, wall: float, cpu: float, hand: float, recv: float) -> None:
        j = self.count & (self.size - 1)
        self.wall[j], self.cpu[j], self.hand[j], self.recv[j] = wall, cpu, hand, recv
        self.count += 1

    def take(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(wall, cpu, hand-off, from-reception) in µs of the outputs recorded since the last
        take (at most ``size``, the newest), and their count; NaN arrays and 0 when none."""
        new = self.count - self.reported
        self.reported = self.count
        if new <= 0:
            nan = np.array([math.nan])
            return nan, nan, nan, nan, 0
        n = min(new, self.size)
        idx = ((self.count & (self.size - 1)) - n + np.arange(n)) & (self.size - 1)
        return (self.wall[idx] * 1e6, self.cpu[idx] * 1e6, self.hand[idx] * 1e6,
                self.recv[idx] * 1e6, n)


class WarningThrottle:
    """The log lines of a diagnostics period, each thing once: the bad input counts that grew
    since the last warning (with their reasons), a re-estimated input rate, a filter error that
    appeared. Nothing on the per-message path logs; this runs once per period."""

    def __init__(self) -> None:
        self.warned: dict[str, int] = {}
        self.rate_changes = 0
        self.filter_error: str | None = None

    def lines(self, rejected: dict[str, int], reasons: dict[str, str], rate_changes: int,
              rate_hz: float | None, filter_error: str | None) -> list[tuple[str, str]]:
        """(severity 'warning' | 'error', text) to log now."""
        out: list[tuple[str, str]] = []
        new_bad = {k: v - self.warned.get(k, 0) for k, v in rejected.items()
                   if v != self.warned.get(k, 0)}
        if new_bad:
            out.append(('warning', bad_input_warning(new_bad, reasons)))
            self.warned = dict(rejected)
        if rate_changes != self.rate_changes:
            self.rate_changes = rate_changes
            rate = math.nan if rate_hz is None else rate_hz
            out.append(('warning', f'the joint state rate changed: now {rate:.1f} Hz '
                                   f'(re-estimated {rate_changes} time(s)); the filter was '
                                   'redesigned and the windows restarted'))
        if filter_error != self.filter_error:
            self.filter_error = filter_error
            if filter_error:
                out.append(('error', f'{filter_error}: no filter, nothing is published '
                                     '(feedforward zero) until the rate or the parameter is '
                                     'fixed'))
        return out
