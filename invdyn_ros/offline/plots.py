"""PNG plots of an offline evaluation and of an ``invdyn_demo`` run (:func:`plot_demo_run`)
(matplotlib, Agg; no pyplot, no display needed).

Figures are built with ``matplotlib.figure.Figure`` directly instead of ``pyplot``, so nothing
global (the backend, the open-figure list) is touched: plotting works headless, in tests, and next
to a process that uses another backend, and figures are freed as soon as they are written.

File names written by :func:`write_all` into the output folder:

- ``torques.png``: measured vs predicted torque per joint (one panel per joint) over the scored
  part of the stream (the test part for ``split``, the whole stream for ``prequential``).
- ``errors.png``: prediction error ``predicted - measured`` per joint, same layout and time axis.
- ``learning_curve.png``: prequential nMSE (mean over joints, rolling window) over stream time, for
  every model; for ``split`` the training part is scored prequentially and a vertical line marks
  where learning stops.
- ``dual_selection.png``: which network the dual identifier used per joint over time (only when
  the ``dual`` model was evaluated).
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ['PLOT_FILES', 'plot_torques', 'plot_errors', 'plot_learning_curve',
           'plot_dual_selection', 'write_all', 'plot_demo_run']

#: kind -> file name, documented above.
PLOT_FILES: dict[str, str] = {
    'torques': 'torques.png',
    'errors': 'errors.png',
    'learning_curve': 'learning_curve.png',
    'dual_selection': 'dual_selection.png',
}

#: More points than this per line are decimated (evenly strided) for drawing; the metrics are
#: computed on every sample, the plot only has to show the shape.
_MAX_POINTS = 5000


def _stride(n: int) -> int:
    return max(1, int(np.ceil(n / _MAX_POINTS)))


def _joint_figure(n: int, title: str) -> tuple[Figure, list]:
    cols = 1 if n <= 4 else 2
    rows = int(np.ceil(n / cols))
    fig = Figure(figsize=(7 * cols, 1.9 * rows + 0.8), layout='constrained')
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig, list(axes[:n])


def _save(fig: Figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_torques(path, t: np.ndarray, measured: np.ndarray, predictions: Mapping[str, np.ndarray],
                 joint_names: Sequence[str], title: str = 'measured vs predicted torque') -> str:
    """One panel per joint: the measured (filtered) torque in black, each model's prediction.

    ``t`` (N,) seconds, ``measured`` (N, n) Nm, ``predictions`` name -> (N, n) Nm (NaN where a
    model had no prediction; matplotlib leaves gaps there).
    """
    t = np.asarray(t, dtype=float)
    measured = np.asarray(measured, dtype=float)
    s = _stride(len(t))
    fig, axes = _joint_figure(len(joint_names), title)
    for j, ax in enumerate(axes):
        ax.plot(t[::s], measured[::s, j], color='k', lw=1.2, label='measured')
        for name, pred in predictions.items():
            ax.plot(t[::s], np.asarray(pred, dtype=float)[::s, j], lw=0.8, label=name)
        ax.set_ylabel(f'{joint_names[j]} [Nm]')
    axes[0].legend(loc='upper right', fontsize='small', ncols=min(4, 1 + len(predictions)))
    axes[-1].set_xlabel('stream time [s]')
    return _save(fig, path)


def plot_errors(path, t: np.ndarray, measured: np.ndarray, predictions: Mapping[str, np.ndarray],
                joint_names: Sequence[str], title: str = 'prediction error (predicted - measured)'
                ) -> str:
    """One panel per joint: ``prediction - measured`` for each model, in Nm."""
    t = np.asarray(t, dtype=float)
    measured = np.asarray(measured, dtype=float)
    s = _stride(len(t))
    fig, axes = _joint_figure(len(joint_names), title)
    for j, ax in enumerate(axes):
        ax.axhline(0.0, color='k', lw=0.6)
        for name, pred in predictions.items():
            err = np.asarray(pred, dtype=float)[:, j] - measured[:, j]
            ax.plot(t[::s], err[::s], lw=0.8, label=name)
        ax.set_ylabel(f'{joint_names[j]} [Nm]')
    if predictions:
        axes[0].legend(loc='upper right', fontsize='small', ncols=min(4, len(predictions)))
    axes[-1].set_xlabel('stream time [s]')
    return _save(fig, path)


def plot_learning_curve(path, curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
                        learning_stops_at: float | None = None,
                        title: str = 'prequential nMSE (mean over joints)') -> str:
    """nMSE over stream time, one line per model (log scale when all values are positive).

    ``curves``: name -> (t (K,), nmse (K,)). ``learning_stops_at``: stream time where the split
    protocol switches learning off (drawn as a dashed line).
    """
    fig = Figure(figsize=(8, 4.5), layout='constrained')
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    positive = True
    for name, (tc, yc) in curves.items():
        tc = np.asarray(tc, dtype=float)
        yc = np.asarray(yc, dtype=float)
        s = _stride(len(tc))
        ax.plot(tc[::s], yc[::s], lw=1.0, label=name)
        finite = yc[np.isfinite(yc)]
        positive &= bool(finite.size == 0 or (finite > 0).all())
    if learning_stops_at is not None:
        ax.axvline(learning_stops_at, color='k', ls='--', lw=0.8, label='learning off')
    if positive and curves:
        ax.set_yscale('log')
    ax.set_xlabel('stream time [s]')
    ax.set_ylabel('nMSE')
    ax.set_title(title)
    ax.grid(True, which='both', alpha=0.3)
    if curves:
        ax.legend(fontsize='small')
    return _save(fig, path)


def plot_dual_selection(path, t: np.ndarray, active: np.ndarray, joint_names: Sequence[str],
                        names: Sequence[str] = ('lstm', 'gru'),
                        title: str = 'dual identifier: network used per joint') -> str:
    """A joint x time image: which of the two networks (index 0/1 in ``names``) was selected.

    ``active`` (N, n) ints 0/1 (negative or NaN: no selection yet, drawn blank).
    """
    from matplotlib.colors import ListedColormap

    t = np.asarray(t, dtype=float)
    act = np.asarray(active, dtype=float)
    s = _stride(len(t))
    act = act[::s]
    act = np.where(np.isfinite(act) & (act >= 0), act, np.nan)
    n = len(joint_names)
    fig = Figure(figsize=(8, 0.45 * n + 1.6), layout='constrained')
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ts = t[::s]
    if len(ts) > 1:
        # one cell per sample, edges halfway between samples; a gap in the stamps (more than 5
        # typical steps) becomes a blank cell instead of stretching its neighbours across it
        dt = np.diff(ts)
        step = float(np.median(dt))
        gap = dt > 5 * step
        left = np.concatenate([[ts[0] - step / 2], np.where(gap, ts[1:] - step / 2,
                                                            0.5 * (ts[1:] + ts[:-1]))])
        right = np.concatenate([np.where(gap, ts[:-1] + step / 2, 0.5 * (ts[1:] + ts[:-1])),
                                [ts[-1] + step / 2]])
        edges, cells = [left[0]], []
        for k in range(len(ts)):
            if k and gap[k - 1]:
                edges.append(left[k])
                cells.append(np.full(n, np.nan))
            edges.append(right[k])
            cells.append(act[k])
        edges, act = np.asarray(edges), np.asarray(cells)
    else:
        edges = np.array([ts[0] - 0.5, ts[0] + 0.5]) if len(ts) else np.array([0.0, 1.0])
        act = act if len(ts) else np.full((1, n), np.nan)
    cmap = ListedColormap(['tab:blue', 'tab:orange'])
    im = ax.pcolormesh(edges, np.arange(n + 1) - 0.5, np.ma.masked_invalid(act.T), cmap=cmap,
                       vmin=-0.5, vmax=1.5, shading='flat')
    ax.invert_yaxis()
    ax.set_yticks(range(n), labels=list(joint_names))
    ax.set_xlabel('stream time [s]')
    ax.set_title(title)
    cbar = fig.colorbar(im, ax=ax, ticks=[0, 1])
    cbar.ax.set_yticklabels([str(names[0]), str(names[1])])
    seen = np.isfinite(act).sum(axis=0)
    frac = np.where(seen > 0, np.nansum(act, axis=0) / np.maximum(seen, 1), np.nan)
    for j in range(n):
        if np.isfinite(frac[j]):
            ax.text(1.0, j, f' {100 * frac[j]:.0f}% {names[1]}', transform=ax.get_yaxis_transform(),
                    va='center', ha='left', fontsize='x-small')
    return _save(fig, path)


def write_all(out_dir, report) -> dict[str, str]:
    """Write every plot an :class:`invdyn_ros.offline.evaluation.EvalReport` has data for.

    Returns kind -> written path. Uses the report's ``series`` (time, measured, predictions,
    curves, dual selection); a report without series (e.g. loaded from JSON) writes nothing.
    """
    series = getattr(report, 'series', None)
    if series is None:
        return {}
    out: dict[str, str] = {}
    joints = list(report.joint_names)
    if series.predictions and len(series.t):
        out['torques'] = plot_torques(os.path.join(out_dir, PLOT_FILES['torques']), series.t,
                                      series.measured, series.predictions, joints)
        out['errors'] = plot_errors(os.path.join(out_dir, PLOT_FILES['errors']), series.t,
                                    series.measured, series.predictions, joints)
    if series.curves:
        out['learning_curve'] = plot_learning_curve(
            os.path.join(out_dir, PLOT_FILES['learning_curve']), series.curves,
            learning_stops_at=series.learning_stops_at)
    if series.dual_active is not None and len(series.dual_t):
        out['dual_selection'] = plot_dual_selection(
            os.path.join(out_dir, PLOT_FILES['dual_selection']), series.dual_t, series.dual_active,
            joints, names=series.dual_names)
    return out


# --------------------------------------------------------------------------------------------
# invdyn_demo: tracking error and prediction nMSE of one demo run
_DEMO_PHASE_COLOURS = {'pd': '#d62728', 'learning': '#ff7f0e', 'learned': '#2ca02c',
                       'ideal': '#1f77b4', 'payload': '#9467bd', 'trajectory': '#17becf'}


def plot_demo_run(run: Any, schedule: Any, path: str | os.PathLike,
                  summary: dict[str, Any] | None = None,
                  rolling: np.ndarray | None = None) -> None:
    """PNG: tracking error norm ``|q_d - q|`` over time (log scale) with the phases shaded and
    measure windows marked, and below it ``rolling``, the rolling prediction nMSE of invdyn_node
    at ``run.t_pred`` (the demo computes it: ``sim.demo_summary.plot_run``). ``run`` is a
    ``sim.demo_recorder.RecordedRun``, ``schedule`` a ``sim.demo_schedule.Schedule`` (not
    imported: the offline layer does not import the simulator)."""
    fig = Figure(figsize=(11, 6.5), dpi=100)
    FigureCanvasAgg(fig)
    ax, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={'height_ratios': [2, 1]})
    norm = np.linalg.norm(run.err, axis=1) if len(run.err) else np.zeros(0)
    if len(norm):
        # A 0.2 s moving RMS keeps the figure readable at 500 Hz.
        k = max(1, int(0.2 / max(np.median(np.diff(run.t_track)) if len(run.t_track) > 1
                                 else 0.002, 1e-6)))
        smooth = np.sqrt(np.convolve(norm ** 2, np.ones(k) / k, mode='same'))
        ax.plot(run.t_track, np.maximum(norm, 1e-6), color='0.75', lw=0.5, label='|q_d - q|')
        ax.plot(run.t_track, np.maximum(smooth, 1e-6), color='k', lw=1.0,
                label='0.2 s moving RMS')
    ax.set_yscale('log')
    ax.set_ylabel('tracking error norm (rad)')
    for a in (ax, ax2):
        for p in schedule.phases:
            # The unseen phases in the colour of their primary counterpart, hatched.
            colour = _DEMO_PHASE_COLOURS.get(p.name.removesuffix('_unseen'), '0.5')
            a.axvspan(p.start_s, p.end_s, color=colour, alpha=0.12, lw=0,
                      hatch='//' if p.name.endswith('_unseen') else None)
            a.axvline(p.measure_start_s, color=colour, lw=0.6, ls=':')
    for p in schedule.phases:
        label = p.name.replace('_unseen', '\nunseen')
        if summary is not None:
            key = {'learning': 'tracking_rms_learning',
                   'trajectory': 'tracking_rms_trajectory_ff'}.get(p.name,
                                                                  f'tracking_rms_{p.name}')
            if key in summary:
                label += f'\n{np.mean(summary[key]) * 1e3:.2f} mrad'
        ax.text(0.5 * (p.start_s + p.end_s), 1.0, label, transform=ax.get_xaxis_transform(),
                ha='center', va='bottom', fontsize=8)
    if run.t_ready is not None:
        for a in (ax, ax2):
            a.axvline(run.t_ready, color='g', lw=1.0, ls='--')
        ax2.text(run.t_ready, 0.95, ' ready', transform=ax2.get_xaxis_transform(), color='g',
                 va='top', fontsize=8)
        # Later changes (e.g. the node's readiness check after the switch to the unseen
        # reference): its feedforward is zeros while it says not ready.
        for t, ready in run.ready_events:
            if t > run.t_ready:
                ax2.axvline(t, color='g' if ready else 'r', lw=0.8, ls='--')
                ax2.text(t, 0.95 if ready else 0.75, ' ready' if ready else ' not ready',
                         transform=ax2.get_xaxis_transform(), color='g' if ready else 'r',
                         va='top', fontsize=7)
    if schedule.payload_change_s is not None:
        for a in (ax, ax2):
            a.axvline(schedule.payload_change_s, color='m', lw=1.0, ls='--')
    if rolling is not None and len(rolling) > 10:
        ax2.plot(run.t_pred, np.maximum(rolling, 1e-6), color='C0', lw=1.0)
        ax2.set_yscale('log')
    ax2.set_ylabel('prediction nMSE\n(1 s rolling)')
    ax2.set_xlabel('simulated time (s)')
    ax.legend(loc='upper right', fontsize=8)
    fig.suptitle('invdyn_demo: PD vs PD + learned feedforward (topic, trajectory) vs PD + ideal '
                 'feedforward, on the primary and (hatched) the unseen reference', y=0.995,
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
