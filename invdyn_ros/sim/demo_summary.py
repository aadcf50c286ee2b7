"""The demo's summary: ``summary.json`` (the contract keys and the rest), its checks, writing it,
and the plot of a run. Built from a :class:`~invdyn_ros.sim.demo_recorder.RecordedRun` and the
:class:`~invdyn_ros.sim.demo_schedule.Schedule` with :mod:`invdyn_ros.sim.demo_metrics`.
ROS-free.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from invdyn_ros.atomic import atomic_write_text
from invdyn_ros.sim.demo_metrics import (_window, not_ready_seconds, payload_change_metrics,
                                         prediction_nmse, repeated_runs, rolling_nmse,
                                         tracking_rms)
from invdyn_ros.sim.demo_recorder import RecordedRun
from invdyn_ros.sim.demo_schedule import UNSEEN_PHASES, DemoError, Schedule

__all__ = ['build_summary', 'validate_summary', 'write_summary', 'plot_run', 'SUMMARY_KEYS',
           'UNSEEN_SUMMARY_KEYS']

#: Keys every summary.json has (the issue's contract); values are finite numbers / lists.
SUMMARY_KEYS = ('tracking_rms_pd', 'tracking_rms_learned', 'tracking_rms_ideal', 'prediction_nmse',
                'learning_seconds', 'sim_rate_hz')
#: Keys every summary of a run with the unseen phases has too (per joint lists, rad) and its ratio.
UNSEEN_SUMMARY_KEYS = ('tracking_rms_learned_unseen', 'tracking_rms_ideal_unseen',
                       'tracking_rms_pd_unseen')


def _finite_list(x) -> list[float]:
    arr = np.asarray(x, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        raise DemoError(f'non-finite value in a result: {arr}')
    return [float(v) for v in arr]


def build_summary(run: RecordedRun, schedule: Schedule, *, rate_hz: float,
                  extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """summary.json's content (see the module docstring for the definitions).

    ``learning_seconds``: motion time at which the node became ready (its first ready report's
    ``ready_since``) -- the node learns from the first joint state on, so this is the simulated
    learning it needed. If it never reported ready it is the run's duration (a lower bound) and
    ``ready`` is false.
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
                runs = repeated_runs(run.ff_used[sel], run.ff_present[sel])
                summary[f'feedforward_repeated_fraction_{phase.name}'] = float(
                    np.sum(runs - 1) / np.sum(sel))
                summary[f'feedforward_longest_repeat_{phase.name}'] = int(runs.max(initial=1))
        summary['units']['feedforward_error_rms'] = 'N m (learned minus true-model feedforward)'
    if 'payload' in rms:
        summary['tracking_rms_payload'] = _finite_list(rms['payload'])
    if all(name in rms for name in UNSEEN_PHASES):
        _add_unseen(summary, run, schedule, rms, mean, applied_pred)
    if schedule.payload_change_s is not None:
        phase = schedule.get('payload')
        # the payload phase only: the unseen reference that follows it changes the error anyway
        sel = (run.t_pred >= phase.start_s) & (run.t_pred < phase.end_s)
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


# Plot: drawn by :func:`invdyn_ros.offline.plots.plot_demo_run`; imported lazily so that importing
# this module does not import matplotlib.
def plot_run(run: RecordedRun, schedule: Schedule, path: str | os.PathLike,
             summary: dict[str, Any] | None = None) -> None:
    """See :func:`invdyn_ros.offline.plots.plot_demo_run`; the 1 s rolling prediction nMSE under it
    is computed here (:func:`~invdyn_ros.sim.demo_metrics.rolling_nmse`)."""
    from invdyn_ros.offline.plots import plot_demo_run
    rolling = None
    if len(run.t_pred) > 10:
        applied = run.applied_at_pred()
        rolling = rolling_nmse(run.t_pred, applied, run.predicted, applied.std(axis=0), 1.0)
    plot_demo_run(run, schedule, path, summary, rolling)
