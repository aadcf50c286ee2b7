"""The demo's record of a run: what the controller did, applied and received, by stamp.

:class:`DemoRecorder` collects it thread-safely while the demo runs (the monitor node and the
controller's observers call it from the executor's thread); :meth:`DemoRecorder.snapshot` gives
the immutable :class:`RecordedRun` in motion-time seconds that the metrics and the summary read;
:func:`save_recording` writes it as ``recording.npz``. ROS-free.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from invdyn_ros import metrics
from invdyn_ros.sim.demo_metrics import MIN_TORQUE_STD
from invdyn_ros.sim.demo_schedule import DemoError

__all__ = ['RecordedRun', 'DemoRecorder', 'save_recording', 'ready_since_ns']


def ready_since_ns(values: dict[str, str]) -> int | None:
    """The stamp (ns) in a ``/diagnostics`` status's ``ready_since`` value (the input stamp of
    the sample that made invdyn_node ready, s), or None where it has none (not ready, an older
    node): then the report's arrival is the ready time."""
    try:
        since = float(values.get('ready_since', ''))
    except ValueError:
        return None
    return int(round(since * 1e9)) if since > 0.0 and since < 1e12 else None


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
        """The node reported ready (or not) as of ``stamp_ns`` (its ``ready_since``,
        :func:`ready_since_ns`); ``None``: at the newest stamp. ``ready_ns`` is the first ready
        time; every change of state is kept in ``ready_events``."""
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
