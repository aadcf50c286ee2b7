"""The per-joint result table of an ``invdyn_demo`` run (plain text and Markdown), built from its
summary dict (:func:`invdyn_ros.sim.demo.build_summary`).
Re-exported by :mod:`invdyn_ros.sim.demo`."""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ['format_table', 'format_markdown_table']

_COLUMNS = (('pd', 'PD only', 'tracking_rms_pd'),
            ('learning', 'PD+ff learning', 'tracking_rms_learning'),
            ('learned', 'PD+learned ff', 'tracking_rms_learned'),
            ('trajectory', 'PD+traj ff', 'tracking_rms_trajectory_ff'),
            ('ideal', 'PD+ideal ff', 'tracking_rms_ideal'),
            ('payload', 'after payload chg', 'tracking_rms_payload'),
            ('pd_unseen', 'unseen: PD only', 'tracking_rms_pd_unseen'),
            ('learned_unseen', 'unseen: PD+learned ff', 'tracking_rms_learned_unseen'),
            ('ideal_unseen', 'unseen: PD+ideal ff', 'tracking_rms_ideal_unseen'))
#: Prediction nMSE columns: over the learned phase's and the learned_unseen phase's windows.
_NMSE_COLUMNS = (('pred. nMSE', 'prediction_nmse'),
                 ('unseen: pred. nMSE', 'prediction_nmse_unseen'))


def _table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    cols = [(title, key) for _, title, key in _COLUMNS if key in summary]
    nmse = [(title, key) for title, key in _NMSE_COLUMNS if key in summary]
    header = ['joint'] + [title for title, _ in cols + nmse]
    rows = []
    for j, name in enumerate(summary['joint_names']):
        rows.append([name] + [f'{summary[key][j] * 1e3:.2f}' for _, key in cols] +
                    [f'{summary[key][j]:.4f}' for _, key in nmse])
    rows.append(['mean'] + [f'{np.mean(summary[key]) * 1e3:.2f}' for _, key in cols] +
                [f'{np.mean(summary[key]):.4f}' for _, key in nmse])
    notes = [
        f'tracking RMS q_d - q in mrad per phase (measure windows: ' + ', '.join(
            f'{p["name"]} {p["measure_start_s"]:g}-{p["measure_end_s"]:g} s'
            for p in summary['schedule']['phases']) + ')',
        f'learned feedforward vs PD only: {100 * summary["improvement_vs_pd"]:.1f} % lower mean '
        f'RMS (target >= 50 %); learned / ideal: {summary["learned_over_ideal"]:.2f}x '
        f'(target <= 2x)',
        *([f'unseen reference (another seed, {_unseen_words(summary)}; the node kept learning): '
           f'learned / ideal {summary["learned_over_ideal_unseen"]:.2f}x (primary: '
           f'{summary["learned_over_ideal"]:.2f}x), learned vs PD only '
           f'{100 * summary["improvement_vs_pd_unseen"]:.1f} % lower mean RMS']
          if 'learned_over_ideal_unseen' in summary else []),
        *([f'unseen, learned feedforward period by period (the node keeps learning): ' + ', '.join(
            f'{np.mean(v) * 1e3:.2f}' for v in summary['tracking_rms_learned_unseen_by_period']) +
           f' mrad mean RMS; learned / ideal in the last period '
           f'{summary["learned_over_ideal_unseen_last_period"]:.2f}x; node not ready for '
           f'{summary.get("node_not_ready_unseen_s", 0.0):.1f} s after the switch (zero '
           f'feedforward meanwhile)']
          if 'tracking_rms_learned_unseen_by_period' in summary else []),
        f'node ready after {summary["learning_seconds"]:.1f} s of simulated learning'
        if summary.get('ready') else
        f'node never reported ready within {summary["learning_seconds"]:.1f} s',
        *([f'trajectory feedforward (JointTrajectory point efforts from ~/trajectory_out, '
           f'JTC-like) / topic feedforward (~/feedforward per sample): '
           f'{summary["trajectory_ff_over_topic_ff"]:.3f}x mean RMS (target <= 1.2x)']
          if 'trajectory_ff_over_topic_ff' in summary else []),
        *([f'learned feedforward error vs true model (RMS, N m): ' + ', '.join(
            f'{v:.3f}' for v in summary['feedforward_error_rms_learned']) +
           f'; steps without feedforward: '
           f'{100 * summary["feedforward_missing_fraction_learned"]:.1f} %, repeating the step '
           f'before\'s: {100 * summary["feedforward_repeated_fraction_learned"]:.1f} % (longest '
           f'run {summary["feedforward_longest_repeat_learned"]} steps)']
          if 'feedforward_error_rms_learned' in summary else []),
        f'simulator: {summary["sim_rate_hz"]:.0f} periods/s achieved '
        f'({summary["real_time_factor"]:.2f}x real time)',
    ]
    change = summary.get('payload_change')
    if change:
        rec = (f'recovered (period nMSE < {change["threshold"]:g}x pre-change) after '
               f'{change["recovery_s"]:.1f} s' if change['recovered']
               else 'not recovered in the run')
        ready = change.get('node_ready_again_after_s')
        notes.append(f'payload {change["before_kg"]:g} -> {change["after_kg"]:g} kg at '
                     f't={change["time_s"]:g} s: prediction nMSE {change["pre_change_nmse"]:.4f} '
                     f'(period before) -> {change["nmse_after_change"]:.4f} (first 2 s after, '
                     f'{change["jump"]:.1f}x the same motion before), {rec}'
                     + (f'; node ready again after {ready:.1f} s' if ready is not None else '')
                     + _rms_recovery_words(change))
    return header, rows, notes


def _rms_recovery_words(change: dict[str, Any]) -> str:
    """The change measured as bench/prior_payload.py does (demo_metrics.error_recovery)."""
    if 'error_rms_before' not in change:
        return ''

    def when(s: float | None) -> str:
        return 'never' if s is None else f'after {s:.1f} s'
    return (f'; rolling {change["error_rms_window_s"]:g} s RMS error '
            f'{change["error_rms_before"]:.3f} N m before (peak {change["error_rms_peak"]:.3f}), '
            f'first back within {change["threshold"]:g}x '
            f'{when(change["error_rms_first_within_s"])}, stays within it '
            f'{when(change["error_rms_stays_within_s"])}')


def _unseen_words(summary: dict[str, Any]) -> str:
    """'1.5x faster, centred 0.6 rad away' from the summary's ``unseen_reference`` (if any)."""
    ref = summary.get('unseen_reference') or {}
    words = []
    if 'speed' in ref:
        words.append(f'{ref["speed"]:g}x faster')
    if 'center_offset_rad' in ref:
        offset = np.asarray(ref['center_offset_rad'], dtype=float)
        words.append(f'centre {offset[0]:+.2f} rad on every joint' if np.allclose(offset, offset[0])
                     else f'centre moved by {np.linalg.norm(offset):.2f} rad')
    if 'distance_to_primary' in ref:
        words.append(f'median pose distance to the primary reference '
                     f'{ref["distance_to_primary"]["median_rad"]:.2f} rad')
    return ', '.join(words) or 'another motion'


def format_table(summary: dict[str, Any]) -> str:
    """The per-joint tracking RMS table (mrad) as aligned plain text, with notes below."""
    header, rows, notes = _table_rows(summary)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ['  '.join(h.ljust(w) if i == 0 else h.rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append('-' * len(lines[0]))
    for row in rows:
        if row[0] == 'mean':
            lines.append('-' * len(lines[0]))
        lines.append('  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))))
    return '\n'.join(lines + [''] + notes)


def format_markdown_table(summary: dict[str, Any]) -> str:
    """The same table as Markdown (for the README)."""
    header, rows, notes = _table_rows(summary)
    lines = ['| ' + ' | '.join(header) + ' |',
             '|' + '|'.join(['---'] + ['---:'] * (len(header) - 1)) + '|']
    for row in rows:
        cells = [f'**{c}**' for c in row] if row[0] == 'mean' else row
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines + [''] + [f'- {n}' for n in notes]) + '\n'
