"""The one chain the node, the offline evaluator and the demo all use: joint samples -> torques.

Per measured sample (``Pipeline.process``)::

    (stamp, q, qd, tau * effort_scale)
        -> estimation.StreamingEstimator      filtered State(q, qd, qdd, tau), equally delayed
        -> feature row [q, qd, qdd]
        -> one streaming Predictor per network  predicts BEFORE training on the sample
        -> WindowBuffer -> trainer.submit(window, tau)   learning happens elsewhere (trainer)
        -> DualIdentifier.update(pred_a, pred_b, tau)    per-joint network choice, error spreads
        -> DualIdentifier.select -> clamp to torque_limits -> Output

Why the pieces sit where they do:

* **Units.** ``effort_scale`` multiplies the driver's effort *before* the estimator, so everything
  downstream (labels, scalers, limits, outputs) is in joint torque units (N m). A UR driver reports
  motor current unless configured otherwise; a KUKA reports torque (scale 1).
* **Alignment / delay.** The estimator delays q, qd, qdd and tau equally (``filter_delay_s``), so
  the label ``tau_k`` and the features of stamp ``k`` describe the same instant. The published
  torque is the model's answer for the *filtered* state, i.e. for the robot ``filter_delay_s``
  before the stamp; :meth:`predict_reference` answers for a desired (unfiltered) state instead.
* **Prequential honesty.** Every prediction is made before its sample reaches the trainer, so
  ``recent_nmse`` (of the selected, clamped output against the measured torque) is the error of
  what would have been published, and ``ready`` is derived from it, not from training losses.
* **Never NaN.** Rows come out of the estimator finite; a predictor's non-finite output is
  replaced per joint by the other network's, and a torque that is still non-finite drops the
  sample (counted). Every torque leaving the pipeline is finite and clamped.
* **Hot-swapped weights.** ``trainer.poll()`` runs at most every ``poll_every`` samples; new
  weights are loaded into one predictor per sample (a load replays the last L-1 rows, ~0.3 ms
  for an LSTM; staggering keeps any single sample's cost bounded).
* **Checkpoints without stalls.** :meth:`start_checkpoint` saves from a background thread. While it
  runs, ``process`` does not touch the trainer (neither trainer is thread-safe); samples for the
  trainer wait in a bounded backlog and are handed over a few per sample afterwards.

The core never imports rclpy; the node is a thin translator around this class.
"""
from __future__ import annotations

import collections
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .checkpoints import (checkpoint_files, checkpoint_prefix, checkpoint_to_resume,
                          fresh_checkpoint_path)
from .config import PipelineConfig
from .errors import CheckpointError, InvdynError
from .estimation import StreamingEstimator
from .identifier import DualIdentifier
from .parameters import NODE_ONLY_PARAMETERS, PIPELINE_PARAMETERS
from .predictor import Predictor
from .residual import PhysicsStage
from .scaling import RunningScaler
from .trainers import ThreadTrainer
from .training import TRAINER_KINDS, ProcessTrainer, TrainerError, make_trainer
from .windows import WindowBuffer, make_windows

__all__ = ['PipelineConfig', 'Pipeline', 'Output', 'BatchOutput', 'ThreadTrainer', 'make_trainer',
           'PIPELINE_PARAMETERS', 'NODE_ONLY_PARAMETERS', 'TRAINER_KINDS', 'checkpoint_files',
           'checkpoint_to_resume', 'fresh_checkpoint_path', 'checkpoint_prefix']

#: An effort beyond ``torque_limits`` x this is not a torque the arm produced (a glitch, a wrong
#: unit): the sample is still predicted, its effort is never a label (see ``Pipeline``).
LABEL_LIMIT_MARGIN = 1.5
_checkpoint_prefix = checkpoint_prefix


# ======================================================================================= output
@dataclass(frozen=True)
class Output:
    """One published sample. Arrays are (n,) float64 in joint order, all finite.

    ``q, qd, qdd``: the filtered state the prediction is for (delayed by the filter, see
    ``estimation``); ``tau``: the filtered, scaled measured torque (None if the sample had none);
    ``torque``: the selected, clamped prediction; ``predictions``: every network's raw prediction
    (None where a network had no output yet); ``active``: index into ``network_names`` per joint;
    ``std_a`` / ``std_b``: the networks' rolling error spreads, ``uncertainty``:
    ``max(std_active, |pred_a - pred_b|)`` (N m). ``ready`` / ``recent_nmse`` as of before this
    sample. After ``process(..., defer=True)`` the ``predictions`` of a network no joint uses,
    ``std_a`` / ``std_b`` and ``uncertainty`` are completed (in place) by ``Pipeline.finish()``.
    """

    stamp: float
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray | None
    torque: np.ndarray
    predictions: dict
    active: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray
    ready: bool
    recent_nmse: float


@dataclass(frozen=True, eq=False)
class BatchOutput:
    """:meth:`Pipeline.process_arrays`' result: row i = input sample i, for N samples.

    ``valid`` (N,) bool: sample i has an output (``process`` would have returned an Output). The
    other arrays hold that Output's fields (see :class:`Output`) in valid rows and NaN (``active``:
    -1, ``has_tau`` / ``ready``: False) elsewhere; ``tau`` is NaN where the sample had no effort
    (``has_tau`` False); ``predictions`` maps every network name to ``(N, n)`` (NaN where that
    network had no output).
    """

    valid: np.ndarray
    stamp: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray
    has_tau: np.ndarray
    torque: np.ndarray
    predictions: dict
    active: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray
    ready: np.ndarray
    recent_nmse: np.ndarray

    def __len__(self) -> int:
        return int(self.valid.shape[0])

    def output(self, i: int) -> Output | None:
        """Sample i as the :class:`Output` ``process`` returns (None if not valid)."""
        if not self.valid[i]:
            return None
        preds = {name: (p[i].copy() if np.isfinite(p[i]).all() else None)
                 for name, p in self.predictions.items()}
        return Output(stamp=float(self.stamp[i]), q=self.q[i].copy(), qd=self.qd[i].copy(),
                      qdd=self.qdd[i].copy(),
                      tau=self.tau[i].copy() if self.has_tau[i] else None,
                      torque=self.torque[i].copy(), predictions=preds,
                      active=self.active[i].copy(), std_a=self.std_a[i].copy(),
                      std_b=self.std_b[i].copy(), uncertainty=self.uncertainty[i].copy(),
                      ready=bool(self.ready[i]), recent_nmse=float(self.recent_nmse[i]))

    def outputs(self) -> list[Output | None]:
        return [self.output(i) for i in range(len(self))]


def normal_scheduling() -> None:
    """Run the calling thread under normal scheduling (SCHED_OTHER). A helper thread started by
    a SCHED_FIFO control thread (the node's ``realtime_priority``) inherits SCHED_FIFO; one that
    does background work calls this first. No-op where it is already normal or not supported."""
    try:
        if os.sched_getscheduler(0) != os.SCHED_OTHER:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


# ======================================================================================= pipeline
class Pipeline:
    """The per-sample chain (module docstring). Not thread-safe: one caller (the control loop).

    ``process`` never raises on data and returns None for a sample without output (rejected by
    the estimator, warming up, or a non-finite torque), see ``counters``.
    """

    def __init__(self, config: PipelineConfig, trainer: Any) -> None:
        self.config = config.validate()
        n = self.n = config.n_joints
        L = self.window = config.learner.window
        self.trainer = trainer
        self.names = config.network_names
        self.dual = config.dual_enabled
        # efforts beyond the torque limits x LABEL_LIMIT_MARGIN are not labels (the estimator
        # keeps the sample and drops its effort, counted 'rejected_labels'): never learned,
        # never scored, never in the identifier; process and process_arrays alike
        self.estimator = StreamingEstimator(
            n, config.filter, effort_limits=None if config.torque_limits is None
            else LABEL_LIMIT_MARGIN * np.asarray(config.torque_limits, dtype=np.float64))
        self.windows = WindowBuffer(L, 3 * n)
        kinds = dict(config.networks())
        self.predictors = {name: Predictor(cfg.model, n, cfg.model_options, L)
                           for name, cfg in kinds.items()}
        self.ref_predictors = {name: Predictor(cfg.model, n, cfg.model_options, L)
                               for name, cfg in kinds.items()}
        self.identifier = DualIdentifier(n, config.dual_window, config.dual_hysteresis,
                                         names=(self.names[0], self.names[-1]),
                                         min_samples=min(10, config.dual_window))
        # the physics stage: prior + identification (prior: rnea), or only the model's gravity
        # for feedforward_mode: minus_gravity
        phys = config.physics
        self.physics = PhysicsStage(phys, config.joint_names, seed=config.learner.seed) \
            if phys.enabled or phys.feedforward_mode == 'minus_gravity' else None
        self.residual = config.residual_network
        self._minus_gravity = phys.feedforward_mode == 'minus_gravity'
        self._prior_ok = False
        self._physics_rate: float | None = None
        self._state = None
        self._label_stats = RunningScaler(n)     # the labels' variance (prior: readiness scale)
        self._limits = np.asarray(config.torque_limits, dtype=np.float64) \
            if config.torque_limits is not None else np.full(n, np.inf)
        self._neg_limits = -self._limits
        self._var_floor = np.where(np.isfinite(self._limits), np.square(1e-3 * self._limits),
                                   1e-12)
        self._scale = np.asarray(config.effort_scale, dtype=np.float64) \
            if config.effort_scale is not None else None
        self._row = np.zeros(3 * n)
        self._nan = np.full(n, np.nan)
        self._resets_seen = 0
        # effort_label 'delayed': the newest scaled raw efforts (NaN rows: samples without)
        self._label_delayed = config.effort_label == 'delayed'
        self._raw_tau = np.zeros((0, n))
        self._raw_tau_pos = 0
        self._raw_tau_count = 0
        self._label_delay = (0, 0.0)             # whole samples, fraction
        self._label_rate: float | None = None
        # readiness: rolling squared errors of the published torque (raw units)
        self._err2 = np.zeros((config.ready_window, n))
        self._err2_sum = np.zeros(n)
        self._err_pos = 0
        self._err_count = 0
        self._scored = 0
        self._target_var = np.full(n, np.inf)   # from the primary network's target scaler
        self._ready = False
        self._recent_nmse = math.inf
        # weights / trainer
        self._since_poll = 0
        self._pending_loads: collections.deque = collections.deque()
        self.trainer_error: str | None = None
        self._save_thread: threading.Thread | None = None
        self._save_result: tuple[bool, Any] | None = None
        self._backlog: collections.deque = collections.deque(maxlen=20000)
        self._ref_last_stamp = -math.inf
        self._pending: tuple | None = None
        self._learner_stats: dict = {}
        self.counters = {
            'samples': 0, 'outputs': 0, 'warming_up': 0, 'dropped_nonfinite': 0,
            'submitted': 0, 'backlog_dropped': 0, 'weight_loads': 0, 'weight_load_errors': 0,
            'stream_resets': 0, 'references': 0, 'rejected_references': 0,
            'reference_outputs': 0, 'trainer_errors': 0,
        }
        self.refresh_weights()

    # ------------------------------------------------------------------ weights
    def _poll(self) -> dict | None:
        if self.trainer_error is not None:
            return None
        try:
            return self.trainer.poll()
        except TrainerError as exc:      # the worker died: keep predicting with the last weights
            self.trainer_error = str(exc)
            self.counters['trainer_errors'] += 1
            return None

    def _queue_weights(self, weights: Mapping[str, Any]) -> None:
        self._pending_loads.clear()      # only the newest weights matter
        for name, w in weights.items():
            for group in (self.predictors, self.ref_predictors):
                if name in group:
                    self._pending_loads.append((group[name], name, w, group is self.predictors))

    def _load_one(self) -> None:
        predictor, name, weights, primary_group = self._pending_loads.popleft()
        try:
            predictor.load_weights(weights)
            self.counters['weight_loads'] += 1
        except CheckpointError:
            self.counters['weight_load_errors'] += 1
            return
        if primary_group and name == self.names[0] and self.residual is None:
            self._target_var = np.square(predictor.out_scaler.std.astype(np.float64))

    def refresh_weights(self) -> bool:
        """Poll the trainer now and load any new weights into every predictor at once.

        Returns True if weights were loaded. (``process`` does the same incrementally.)"""
        if self._save_thread is not None:
            return False
        weights = self._poll()
        if weights:
            self._queue_weights(weights)
        loaded = bool(self._pending_loads)
        while self._pending_loads:
            self._load_one()
        return loaded

    # ------------------------------------------------------------------ the hot path
    def _scaled_effort(self, tau: Any) -> Any:
        """The driver's effort times ``effort_scale`` (N m); anything unusable is passed on
        unchanged for the estimator to reject and count."""
        if tau is not None and self._scale is not None:
            try:
                t = np.asarray(tau, dtype=np.float64)
                tau = t * self._scale if t.shape == self._scale.shape else t
            except (TypeError, ValueError):
                pass                       # the estimator rejects and counts it
        return tau

    def _record_effort(self, tau: Any) -> None:
        """``effort_label='delayed'``: keep this accepted sample's raw (scaled) effort, NaN when it
        has none, in a ring of the last ``floor(filter_delay_s * rate) + 2`` samples."""
        est = self.estimator
        if self._raw_tau.shape[0] == 0 or self._label_rate != est.rate_hz:
            d = est.delay_s * est.rate_hz            # samples
            whole = int(math.floor(d))
            self._label_delay = (whole, d - whole)
            self._label_rate = est.rate_hz
            self._raw_tau = np.full((whole + 2, self.n), np.nan)
            self._raw_tau_pos = self._raw_tau_count = 0
        ring = self._raw_tau
        pos = self._raw_tau_pos
        if tau is None or np.shape(tau) != (self.n,):
            ring[pos] = np.nan
        else:
            ring[pos] = tau
        self._raw_tau_pos = (pos + 1) % ring.shape[0]
        self._raw_tau_count = min(self._raw_tau_count + 1, ring.shape[0])

    def _delayed_label(self) -> np.ndarray | None:
        """The effort recorded ``filter_delay_s`` before the newest recorded sample (linear
        interpolation between the two nearest samples), or None: not enough history since the
        last reset, or a sample without effort involved."""
        ring = self._raw_tau
        whole, frac = self._label_delay
        if self._raw_tau_count < whole + 2:
            return None
        size = ring.shape[0]
        newest = self._raw_tau_pos - 1
        label = (1.0 - frac) * ring[(newest - whole) % size] \
            + frac * ring[(newest - whole - 1) % size]
        return label if np.isfinite(label).all() else None

    def _push(self, name: str, row: np.ndarray, defer: bool = False) -> np.ndarray | None:
        """One network's prediction for ``row``: its streaming output, or -- for the residual
        network -- the prior plus the trusted residual (the prior alone while the network has no
        output yet; None if the prior failed on this sample)."""
        y = self.predictors[name].push(row, defer=defer)
        if name == self.residual:
            return self.physics.combine(y) if self._prior_ok else None
        return y

    def _labels(self, label: np.ndarray) -> np.ndarray:
        """What each network learns for ``label``: the residual network ``label - tau_prior``."""
        if self.residual is None:
            return label
        res = label - self.physics.tau_prior
        return np.stack((res, label)) if self.dual else res

    def _learn_physics(self, state: Any, tau: np.ndarray | None) -> None:
        """Identification, visited region, label statistics (off the latency path)."""
        phys = self.physics
        rate = self.estimator.rate_hz
        if rate != self._physics_rate:
            self._physics_rate = rate
            phys.set_rate(rate)
        if tau is None:
            return
        if self.residual is None and phys.begin(state.q, state.qd, state.qdd) is None:
            return
        sampled = phys.learn(state.q, state.qd, state.qdd, tau)
        if self.residual is not None and sampled:   # the readiness score's scale: var(label),
            # from the samples the physics stage keeps (a RunningScaler update costs ~50 µs)
            stats = self._label_stats.partial_fit(tau[None])
            if stats.count >= 2:  # floor: 0.1 % of the torque limit (a joint whose torque never
                # changes must not turn a 1e-9 N m error into an nMSE of 1e6)
                self._target_var = np.maximum(stats.var, self._var_floor)

    def feedforward(self, torque: np.ndarray, q: np.ndarray) -> np.ndarray:
        """The command for a predicted (clamped) ``torque`` at position ``q``:
        ``feedforward_mode`` total -> the torque; minus_gravity -> torque - g(q) of the
        identified model, clamped to ``torque_limits`` again."""
        if not self._minus_gravity:
            return torque
        cmd = torque - self.physics.gravity(np.asarray(q, dtype=np.float64))
        np.clip(cmd, self._neg_limits, self._limits, out=cmd)
        return cmd

    def _reset_streams(self) -> None:
        self.finish()
        self._raw_tau_count = 0
        self.windows.reset()
        for p in self.predictors.values():
            p.reset_stream()
        self.counters['stream_resets'] += 1

    def process(self, stamp: float, q: Any, qd: Any = None, tau: Any = None,
                defer: bool = False) -> Output | None:
        """One measured sample (stamp in s; q, qd, tau (n,) in joint order; qd / tau optional).

        Order per sample: predict (before training: prequential), select per joint with the
        identifier statistics of the *previous* samples, clamp; then the bookkeeping -- window ->
        trainer, identifier update with this sample's errors, readiness score, weights.

        ``defer=True`` returns right after the clamp and leaves the rest to :meth:`finish`, so the
        node can publish in between and the bookkeeping is off its latency path. On that fast path
        only the networks that some joint currently uses predict, and of those only the read-out
        chain runs (``Predictor.push(row, defer=True)``); their other chains are advanced and the
        other network's prediction (it must still see every row) is made in :meth:`finish`, which also completes
        the Output in place: ``predictions`` of every network and ``uncertainty`` (which needs both
        networks). Results are identical to ``defer=False``. A pending :meth:`finish` is done at
        the start of the next call anyway.
        """
        if self._pending is not None:
            self.finish()
        c = self.counters
        c['samples'] += 1
        tau = self._scaled_effort(tau)
        est = self.estimator
        state = est.update(stamp, q, qd, tau)
        if est.counters['resets'] != self._resets_seen:
            # a gap: a window must not span it, the recurrent chains must not carry over
            self._resets_seen = est.counters['resets']
            self._reset_streams()
        if state is None:
            return None
        if self._label_delayed:                      # the label itself is made in finish()
            self._record_effort(tau if state.tau is not None else None)
        self._state = state
        if self.residual is not None:
            self._prior_ok = self.physics.begin(state.q, state.qd, state.qdd) is not None
        row = self._row
        n = self.n
        row[:n] = state.q
        row[n:2 * n] = state.qd
        row[2 * n:] = state.qdd
        names, ident = self.names, self.identifier
        preds: dict[str, np.ndarray | None] = {}
        torque = None
        if self.dual:
            active = ident.active
            use_a, use_b = ident.uses
            first = names if (use_a and use_b) else (names[1],) if use_b else (names[0],)
        else:
            active = np.zeros(n, dtype=np.int64)
            first = names
        for name in first:                               # before training on this sample
            # defer: only the read-out chain now, the other chains in finish()
            preds[name] = self._push(name, row, defer=defer)
        if len(first) == 1:
            candidate = preds[first[0]]
        else:
            pa, pb = preds[names[0]], preds[names[1]]
            candidate = None if pa is None or pb is None else np.where(active == 1, pb, pa)
        if candidate is not None and np.isfinite(candidate).all():
            torque = candidate
        else:
            # warming up or a non-finite prediction: every network now, the identifier decides
            for name in names:
                if name not in preds:
                    preds[name] = self._push(name, row)
            pa = preds[names[0]]
            pb = preds[names[1]] if self.dual else None
            if pa is None and pb is None:
                c['warming_up'] += 1
            else:
                sel = ident.select(pa if pa is not None else self._nan,
                                   pb if pb is not None else self._nan) if self.dual \
                    else ident.select(pa)
                torque, active = sel.torque, sel.active
        out = None
        if torque is not None:
            # np.minimum/np.maximum: np.clip costs ~5 µs more per call on the hot path
            torque = np.minimum(torque, self._limits)
            np.maximum(torque, self._neg_limits, out=torque)
            if np.isfinite(torque).all():
                c['outputs'] += 1
                out = Output(stamp=state.stamp, q=state.q, qd=state.qd, qdd=state.qdd,
                             tau=state.tau, torque=torque, predictions=preds, active=active,
                             std_a=np.zeros(n), std_b=np.zeros(n), uncertainty=np.zeros(n),
                             ready=self._ready, recent_nmse=self._recent_nmse)
            else:
                c['dropped_nonfinite'] += 1
                torque = None
        self._pending = (state.tau, preds, torque, out)
        if not defer:
            self.finish()
        return out

    def finish(self) -> None:
        """The bookkeeping of the last ``process(..., defer=True)`` (no-op if none is pending)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        tau, preds, torque, out = pending
        names = self.names
        for name in names:
            if name in preds:                            # deferred chains of the fast path
                self.predictors[name].complete()
            else:                                        # the networks the fast path skipped
                preds[name] = self._push(name, self._row)
        pa = preds[names[0]]
        pb = preds[names[1]] if self.dual else None
        ident = self.identifier
        if out is not None:                              # with the statistics used for torque
            sel = ident.select(pa if pa is not None else self._nan,
                               pb if pb is not None else self._nan) if self.dual \
                else ident.select(pa)
            out.uncertainty[:] = np.where(np.isfinite(sel.uncertainty), sel.uncertainty, 0.0)
            if self.residual is not None and self._prior_ok:
                np.maximum(out.uncertainty, self.physics.uncertainty(), out=out.uncertainty)
            out.std_a[:] = ident.std_a
            out.std_b[:] = ident.std_b
        self.windows.push(self._row)
        label = self._delayed_label() if self._label_delayed else tau
        if label is not None and self.windows.full and (self.residual is None or self._prior_ok):
            self._submit(self.windows.window(), self._labels(label))
        if self.physics is not None:
            self._learn_physics(self._state, tau)
        if tau is not None:
            if pa is not None and (pb is not None or not self.dual):
                ident.update(pa, pb if self.dual else pa, tau)
            if torque is not None:
                self._score(torque, tau)
        self._housekeeping()

    #: Windows per ``Predictor.predict_many`` call in :meth:`process_batch`: bounds the memory of
    #: one call (4096 x L x 3n float64, ~7 MB for 7 joints and L = 10) while keeping the per-call
    #: overhead negligible.
    BATCH_CHUNK = 4096

    def process_batch(self, stamps: Sequence[float], q: Sequence[Any],
                      qd: Sequence[Any] | None = None, tau: Sequence[Any] | None = None
                      ) -> list[Output | None]:
        """Many recorded samples with LEARNING OFF: ``[process(stamp_i, q_i, qd_i, tau_i)]``, fast.

        The same as :meth:`process_arrays` (see there), returned as one ``Output`` (or None) per
        sample like :meth:`process` would; ``process_arrays`` is faster for long recordings."""
        return self.process_arrays(stamps, q, qd, tau).outputs()

    def process_arrays(self, stamps: Sequence[float], q: Any, qd: Any = None, tau: Any = None
                       ) -> 'BatchOutput':
        """Many recorded samples with LEARNING OFF, vectorized; the result as arrays.

        For offline replay (``invdyn_eval``'s test part), not for the node. ``stamps``, ``q`` and
        (if given) ``qd`` / ``tau`` have one entry per sample, each entry what :meth:`process`
        would take (an ``(n,)`` array, or None for a sample without velocity / effort; a row
        with NaN is passed on as it is, i.e. rejected by the estimator like in ``process``);
        ``(N, n)`` float arrays are the fast form. Mismatched lengths raise ValueError; bad samples
        never raise.

        What differs from calling :meth:`process` per sample, and why:

        * **Nothing reaches the trainer** (no ``submit``, no ``poll``), so the weights are fixed
          for the whole batch; that is what makes batching exact. Weights already queued for
          loading are loaded into every predictor before the batch (``process`` would spread
          them over the next samples).
        * Every stage runs over the whole batch instead of sample by sample, each one the batch
          form of the same code: the estimator (``StreamingEstimator.update_many``: the same
          rejections, gaps -> stream boundaries, bit-identical states), the networks
          (``Predictor.predict_many`` over all windows of every continuous segment,
          :attr:`BATCH_CHUNK` windows per call, instead of one cell step per sample), the dual
          identifier (``DualIdentifier.update_many``: the same rolling statistics and switching
          law) and the readiness score (:meth:`_score_many`). The first segment continues the
          current stream (its last L-1 rows are taken from the window buffer), so a batch right
          after ``process`` calls predicts what ``process`` would; the first L-1 rows after a gap
          have no prediction (``warming_up``), like the streaming predictor.
        * The order per sample is the one of ``process`` + ``finish``: the identifier selects
          with the previous samples' statistics, the torque is clamped, ``ready`` and
          ``recent_nmse`` are as of before the sample; then the identifier is updated with the
          sample's errors and the readiness score advances. Results equal ``process``'s up to
          float32 rounding of the networks (full-window forward vs. streamed cells) and float64
          rounding of the rolling statistics (a switching decision exactly at its threshold could
          differ).
        * Afterwards the streaming predictors and the window buffer are reset: a following
          :meth:`process` call starts a fresh window (its first L-1 samples warm up), as after
          a gap. The estimator keeps its state.
        """
        N = len(stamps)
        if len(q) != N or (qd is not None and len(qd) != N) or (tau is not None and len(tau) != N):
            raise ValueError(f'process_batch: stamps, q, qd and tau need one entry per sample '
                             f'({N} stamps, {len(q)} q, {None if qd is None else len(qd)} qd, '
                             f'{None if tau is None else len(tau)} tau)')
        if self._pending is not None:
            self.finish()
        while self._pending_loads:                # fixed weights for the whole batch
            self._load_one()
        c = self.counters
        n, L = self.n, self.window
        names = self.names
        name_a, name_b = names[0], names[-1]
        dual = self.dual
        c['samples'] += N

        # (1) the estimator over the whole batch; stream boundaries where its reset count moves
        if tau is not None and self._scale is not None:
            try:                                  # regular (N, n) efforts: scale them at once
                tau_arr = np.asarray(tau, dtype=np.float64)
            except (TypeError, ValueError):       # None entries, ragged rows: one by one
                tau_arr = None
            if tau_arr is not None and tau_arr.shape == (N, n):
                tau = tau_arr * self._scale
            else:
                tau = [self._scaled_effort(t) for t in tau]
        sb = self.estimator.update_many(stamps, q, qd, tau)
        m = len(sb)
        if N:
            boundary = np.diff(np.concatenate(([self._resets_seen], sb.resets))) != 0
            c['stream_resets'] += int(np.count_nonzero(boundary))
            self._resets_seen = int(sb.resets[-1])
            segment_of_sample = np.cumsum(boundary)
        else:
            segment_of_sample = np.zeros(0, dtype=np.int64)
        S = sb.index
        rows = np.concatenate((sb.q, sb.qd, sb.qdd), axis=1) if m else np.empty((0, 3 * n))
        seg = segment_of_sample[S]

        # (2) every network on all windows of every segment, in chunks
        preds = {name: np.full((m, n), np.nan) for name in names}
        prefix = self.windows.window()[-(L - 1):] if L > 1 and len(self.windows) else \
            np.empty((0, 3 * n))
        cuts = np.flatnonzero(np.diff(seg)) + 1 if m else np.zeros(0, dtype=np.int64)
        for k, (lo, hi) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, m])):
            if hi <= lo:
                continue
            head = prefix if (k == 0 and seg[0] == 0) else np.empty((0, 3 * n))
            R = np.concatenate((head, rows[lo:hi])) if len(head) else rows[lo:hi]
            if len(R) < L:
                continue
            first = len(head)
            M = R.shape[0]
            state_of_row = np.full(M, -1)
            state_of_row[first:] = np.arange(lo, hi)
            for s0 in range(0, M - L + 1, self.BATCH_CHUNK):
                W = make_windows(R[s0:s0 + self.BATCH_CHUNK + L - 1], L)
                target = state_of_row[s0 + L - 1:s0 + L - 1 + W.shape[0]]
                keep = target >= 0
                for name in names:
                    y = self._predict_windows(self.predictors[name], W)
                    preds[name][target[keep]] = y[keep]
        have = {}
        for name in names:
            finite = np.isfinite(preds[name]).all(axis=1)
            nonfinite = int(np.count_nonzero(~finite & ~np.isnan(preds[name]).all(axis=1)))
            self.predictors[name].counters['nonfinite_outputs'] += nonfinite
            preds[name][~finite] = np.nan
            have[name] = finite
        prior_unc = None
        if self.residual is not None and m:       # prior + trusted residual, as _push
            TP, trust, prior_rms = self.physics.predict_many(sb.q, sb.qd, sb.qdd)
            comb = self.physics.combine_many(TP, trust, preds[self.residual])
            preds[self.residual] = comb
            have[self.residual] = np.isfinite(comb).all(axis=1)
            prior_unc = (1.0 - trust)[:, None] * prior_rms[None, :]
        PA, ha = preds[name_a], have[name_a]
        PB, hb = (preds[name_b], have[name_b]) if dual else (PA, ha)

        # (3) the identifier over the rows it learns from, then selection with the statistics
        # from before each row (state j sees the updates of rows < j)
        ident = self.identifier
        upd = np.flatnonzero(sb.has_tau & ha & hb)
        trace = ident.update_many(PA[upd], PB[upd], sb.tau[upd])
        before = np.searchsorted(upd, np.arange(m), side='left')
        A = np.concatenate((trace.active_before, ident.active[None]))[before]
        SA = np.concatenate((trace.std_a_before, ident.std_a[None]))[before]
        SB = np.concatenate((trace.std_b_before, ident.std_b[None]))[before]
        out_ok = ha | hb
        c['warming_up'] += int(np.count_nonzero(~out_ok))
        if dual:
            eff = A.copy()
            eff[~ha & hb] = 1                     # a missing network never hides a working one
            eff[ha & ~hb] = 0
            torque = np.where(eff == 1, PB, PA)
            std_active = np.where(eff == 1, SB, SA)
            diff = np.abs(PA - PB)
            diff[~np.isfinite(diff)] = 0.0
            unc = np.maximum(std_active, diff)
        else:
            eff = np.zeros((m, n), dtype=np.int64)
            torque = PA.copy()
            unc = SA.copy()
        unc[~np.isfinite(unc)] = 0.0
        if prior_unc is not None:
            np.maximum(unc, prior_unc, out=unc)
        np.clip(torque, -self._limits, self._limits, out=torque)
        finite_t = np.isfinite(torque).all(axis=1)
        c['dropped_nonfinite'] += int(np.count_nonzero(out_ok & ~finite_t))
        out_ok &= finite_t
        c['outputs'] += int(np.count_nonzero(out_ok))

        # (4) readiness: scored rows in order, each output row sees the scores of rows before it
        scored = np.flatnonzero(out_ok & sb.has_tau)
        nmse0, ready0 = self._recent_nmse, self._ready
        nmse_after, ready_after = self._score_many(torque[scored], sb.tau[scored])
        before = np.searchsorted(scored, np.arange(m), side='left')
        nmse_rows = np.concatenate(([nmse0], nmse_after))[before]
        ready_rows = np.concatenate(([ready0], ready_after))[before]

        # the streams were not advanced row by row: the next process() starts a fresh window
        self.windows.reset()
        for p in self.predictors.values():
            p.reset_stream()

        def spread(x: np.ndarray, fill: Any) -> np.ndarray:
            full = np.full((N,) + x.shape[1:], fill, dtype=x.dtype)
            full[S[out_ok]] = x[out_ok]
            return full

        valid = np.zeros(N, dtype=bool)
        valid[S[out_ok]] = True
        return BatchOutput(
            valid=valid, stamp=spread(sb.stamp, np.nan), q=spread(sb.q, np.nan),
            qd=spread(sb.qd, np.nan), qdd=spread(sb.qdd, np.nan), tau=spread(sb.tau, np.nan),
            has_tau=spread(sb.has_tau, False), torque=spread(torque, np.nan),
            predictions={name: spread(preds[name], np.nan) for name in
                         ((name_a, name_b) if dual else (name_a,))},
            active=spread(eff.astype(np.int64), -1), std_a=spread(SA, np.nan),
            std_b=spread(SB, np.nan), uncertainty=spread(unc, np.nan),
            ready=spread(ready_rows.astype(bool), False), recent_nmse=spread(nmse_rows, np.nan))

    @staticmethod
    def _predict_windows(predictor: Predictor, windows: np.ndarray) -> np.ndarray:
        """``predictor.predict_many`` that never raises on data: a value beyond float32 (which
        ``predict_many`` rejects as non-finite after its cast) is clipped to the float32 range
        first; after input scaling it is clipped to ``±input_clip`` anyway, as ``push`` does."""
        try:
            return predictor.predict_many(windows)
        except ValueError:
            big = float(np.finfo(np.float32).max)
            return predictor.predict_many(np.clip(windows, -big, big))

    def _submit(self, window: np.ndarray, tau: np.ndarray) -> None:
        if self.trainer_error is not None:
            return
        if self._save_thread is not None:          # the trainer is busy saving: keep it for later
            if len(self._backlog) == self._backlog.maxlen:
                self.counters['backlog_dropped'] += 1
            self._backlog.append((window, tau.copy()))
            return
        self.trainer.submit(window, tau)
        self.counters['submitted'] += 1

    def _housekeeping(self) -> None:
        """Weights in, checkpoint thread out, backlog drained: a bounded amount per sample."""
        if self._save_thread is not None:
            if self._save_thread.is_alive():
                return
            self._save_thread = None
        if self._backlog:
            for _ in range(min(4, len(self._backlog))):
                w, t = self._backlog.popleft()
                if self.trainer_error is None:
                    self.trainer.submit(w, t)
                    self.counters['submitted'] += 1
        if self._pending_loads:
            self._load_one()
            return
        self._since_poll += 1
        if self._since_poll >= self.config.poll_every:
            self._since_poll = 0
            weights = self._poll()
            if weights:
                self._queue_weights(weights)

    def _score(self, torque: np.ndarray, tau: np.ndarray) -> None:
        """Rolling nMSE of the published torque; ``ready`` with hysteresis."""
        e = torque - tau
        e *= e
        pos = self._err_pos
        size = len(self._err2)
        if self._err_count == size:
            self._err2_sum -= self._err2[pos]
        else:
            self._err_count += 1
        self._err2[pos] = e
        self._err2_sum += e
        pos += 1
        if pos == size:
            pos = 0
            np.sum(self._err2, axis=0, out=self._err2_sum)   # no drift of the running sum
        self._err_pos = pos
        self._scored += 1
        nmse = float(np.mean(self._err2_sum / (self._err_count * self._target_var)))
        self._recent_nmse = nmse if math.isfinite(nmse) else math.inf
        cfg = self.config
        if self._scored < cfg.ready_min_samples:
            self._ready = False
        elif self._ready:
            self._ready = self._recent_nmse <= cfg.unready_factor * cfg.ready_nmse
        else:
            self._ready = self._recent_nmse < cfg.ready_nmse

    def _score_many(self, torque: np.ndarray, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_score` over k rows at once; returns ``recent_nmse`` and ``ready`` after each row.

        Rolling sums from a cumulative sum over the ring's rows (oldest first) and the new ones;
        ``ready``'s hysteresis as a forward fill: below ``ready_nmse`` sets it, above
        ``unready_factor * ready_nmse`` (or before ``ready_min_samples``) clears it, in between
        the previous value holds -- the same rule as :meth:`_score` (``unready_factor >= 1``).
        The ring and its sum are left exactly as k calls of :meth:`_score` leave them."""
        k = len(torque)
        if k == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        E = np.square(torque - tau)
        size, cnt, pos = len(self._err2), self._err_count, self._err_pos
        old = self._err2[:cnt] if cnt < size else np.roll(self._err2, -pos, axis=0)
        allE = np.concatenate((old, E))
        cs = np.concatenate((np.zeros((1, self.n)), np.cumsum(allE, axis=0)))
        end = cnt + np.arange(1, k + 1)
        counts = np.minimum(end, size)
        sums = cs[end] - cs[end - counts]
        np.maximum(sums, 0.0, out=sums)
        with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
            nmse = np.mean(sums / (counts[:, None] * self._target_var), axis=1)
        nmse[~np.isfinite(nmse)] = np.inf
        cfg = self.config
        n_scored = self._scored + np.arange(1, k + 1)
        event = np.where(nmse < cfg.ready_nmse, 1,
                         np.where(nmse > cfg.unready_factor * cfg.ready_nmse, 0, -1))
        event[n_scored < cfg.ready_min_samples] = 0
        idx = np.where(event >= 0, np.arange(k), -1)
        np.maximum.accumulate(idx, out=idx)
        ready = np.where(idx >= 0, event[np.maximum(idx, 0)] == 1, self._ready)
        # the ring as k sequential _score calls leave it
        total = cnt + k
        if total < size:
            self._err2[:total] = allE
            self._err_pos, self._err_count = total, total
        else:
            new_pos = (pos + k) % size if cnt == size else total % size
            self._err2[:] = np.roll(allE[-size:], new_pos, axis=0)
            self._err_pos, self._err_count = new_pos, size
        np.sum(self._err2, axis=0, out=self._err2_sum)
        self._scored += k
        self._recent_nmse = float(nmse[-1])
        self._ready = bool(ready[-1])
        return nmse, ready

    # ------------------------------------------------------------------ references
    def predict_reference(self, q: Any, qd: Any, qdd: Any, stamp: float | None = None
                          ) -> np.ndarray | None:
        """Torque (n,) for a desired state, from predictors fed with the stream of references.

        The window is made of references (so a feedforward for a reference trajectory does not mix
        desired and measured states); the per-joint network choice is the measured stream's.
        ``stamp`` (s, any clock): a gap longer than the filter's ``max_gap_s`` since the previous
        reference restarts the window. Returns None while the window fills up or for an invalid
        reference (wrong length, NaN/Inf, beyond the estimator's magnitude limits; counted).
        """
        c = self.counters
        c['references'] += 1
        n = self.n
        try:
            arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in (q, qd, qdd)]
        except (TypeError, ValueError):
            c['rejected_references'] += 1
            return None
        f = self.config.filter
        if any(a.shape != (n,) for a in arrays) or not all(np.isfinite(a).all() for a in arrays) \
                or np.abs(arrays[0]).max() > f.max_abs_position \
                or np.abs(arrays[1]).max() > f.max_abs_velocity:
            c['rejected_references'] += 1
            return None
        if stamp is not None:
            if not math.isfinite(stamp) or stamp - self._ref_last_stamp > f.max_gap_s \
                    or stamp < self._ref_last_stamp:
                for p in self.ref_predictors.values():
                    p.reset_stream()
            self._ref_last_stamp = float(stamp)
        row = np.concatenate(arrays)
        preds = [self.ref_predictors[name].push(row) for name in self.names]
        if self.residual is not None:             # names[0]: prior + trusted residual
            preds[0] = self.physics.evaluate(*arrays, preds[0])
        pa = preds[0]
        pb = preds[1] if self.dual else None
        if pa is None and pb is None:
            return None
        if self.dual:
            sel = self.identifier.select(pa if pa is not None else self._nan,
                                         pb if pb is not None else self._nan)
        else:
            sel = self.identifier.select(pa)
        torque = np.clip(sel.torque, -self._limits, self._limits)
        if not np.isfinite(torque).all():
            c['dropped_nonfinite'] += 1
            return None
        c['reference_outputs'] += 1
        return torque

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def recent_nmse(self) -> float:
        return self._recent_nmse

    @property
    def filter_delay_s(self) -> float | None:
        """Delay of the published state (s) once the rate is known, else None."""
        return self.estimator.delay_s

    @property
    def weights_version(self) -> dict[str, int]:
        return {name: p.version for name, p in self.predictors.items()}

    def stats(self) -> dict[str, Any]:
        """Counters and learner statistics for diagnostics (plain Python types)."""
        if self._save_thread is not None:
            learners = self._learner_stats       # the trainer is busy saving: leave it alone
        else:
            try:
                learners = self._learner_stats = self.trainer.stats()
            except InvdynError as exc:
                learners = {'error': str(exc)}
        trainer_counters = dict(getattr(self.trainer, 'counters', {}) or {})
        return {
            'pipeline': dict(self.counters),
            'estimator': dict(self.estimator.counters),
            'identifier': dict(self.identifier.counters),
            'trainer': trainer_counters,
            'learners': learners,
            'trainer_error': self.trainer_error,
            'ready': self._ready,
            'recent_nmse': self._recent_nmse if math.isfinite(self._recent_nmse) else None,
            'scored': self._scored,
            'weights_version': self.weights_version,
            'active': [self.config.predictor_labels[int(i)] for i in self.identifier.active]
            if self.dual else [self.config.predictor_labels[0]] * self.n,
            'rate_hz': self.estimator.rate_hz,
            'filter_delay_s': self.estimator.delay_s,
            'checkpoint_running': self._save_thread is not None,
            'backlog': len(self._backlog),
            'physics': self.physics.stats() if self.physics is not None else None,
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike, final: bool = False) -> dict[str, str]:
        """Write the checkpoint set of every network now (blocking); returns ``{name: file}``.

        ``path`` is the user's ``checkpoint_path``; the files are :func:`checkpoint_files` and the
        manifest. The directory is created if needed. ``final`` (shutdown): a process trainer
        writes what it has learned without first learning its queued samples. Raises
        TrainerError / OSError on failure (the previous set stays the checkpoint).
        """
        if self._save_thread is not None:
            self._save_thread.join()
            self._save_thread = None
        return self._write_checkpoint(path, final)

    def start_checkpoint(self, path: str | os.PathLike, on_done: Any = None) -> bool:
        """Start writing a checkpoint in a background thread (``process`` keeps running, the
        trainer is left alone until it is done); False if one is already running or the trainer
        has failed. :meth:`checkpoint_result` tells the outcome; ``on_done(ok, detail)``, if
        given, is also called with it (from the background thread)."""
        if self._save_thread is not None and not self._save_thread.is_alive():
            self._save_thread = None     # finished while no sample came to tidy it up
        if self._save_thread is not None or self.trainer_error is not None:
            return False
        self._save_result = None

        def run() -> None:
            normal_scheduling()          # not the SCHED_FIFO of a real-time control thread
            try:
                result = (True, self._write_checkpoint(path))
            except Exception as exc:  # noqa: BLE001 - reported through checkpoint_result
                result = (False, f'{type(exc).__name__}: {exc}')
            self._save_result = result
            if on_done is not None:
                on_done(*result)

        thread = threading.Thread(target=run, name='invdyn-checkpoint', daemon=True)
        self._save_thread = thread
        thread.start()
        return True

    def _write_checkpoint(self, path: str | os.PathLike, final: bool = False) -> dict[str, str]:
        prefix = _checkpoint_prefix(path)
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
        options: dict[str, Any] = {'joint_names': self.config.joint_names}
        if final and isinstance(self.trainer, ProcessTrainer):
            options['learn_pending'] = False
        return self.trainer.save(prefix, **options)

    def save_checkpoint_wait(self, timeout: float | None = None) -> None:
        """Wait for a background save to end (it reports through checkpoint_result)."""
        thread = self._save_thread
        if thread is not None:
            thread.join(timeout)

    @property
    def checkpoint_running(self) -> bool:
        return self._save_thread is not None and self._save_thread.is_alive()

    def checkpoint_result(self) -> tuple[bool, Any] | None:
        """``(True, {name: file})`` or ``(False, error)`` of the last finished background save,
        None while one runs or if none finished since the last call."""
        if self.checkpoint_running:
            return None
        result, self._save_result = self._save_result, None
        return result

    def close(self) -> None:
        """Wait for a running checkpoint and close the trainer."""
        if self._save_thread is not None:
            self._save_thread.join(120.0)
            self._save_thread = None
        self.trainer.close()

    def __enter__(self) -> 'Pipeline':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
