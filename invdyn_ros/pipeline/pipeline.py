"""The one chain the node, the offline evaluator and the demo all use: joint samples -> torques.

Per measured sample (``Pipeline.process``)::

    (stamp, q, qd, tau * effort_scale)
        -> estimation.StreamingEstimator      filtered State(q, qd, qdd, tau), equally delayed
        -> feature row [q, qd, qdd]
        -> one streaming Predictor per network  predicts BEFORE training on the sample
        -> DualIdentifier.choose / select_from -> clamp to torque_limits -> Published (publish)
        -> finish(): WindowBuffer -> trainer.submit(window, tau)   learning happens elsewhere
                     DualIdentifier.update(pred_a, pred_b, tau)   per-joint choice, error spreads
                     readiness.Readiness.update(torque, tau)       rolling nMSE, ready -> Output

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
  trainer wait in a bounded backlog and are handed over a few per sample afterwards
  (:class:`~invdyn_ros.pipeline.pipeline_learning.LearningSide`, the trainer's side of the
  pipeline).

* **The physics prior** (``prior: rnea``) sits around the networks, not inside them: the prior
  before the networks, the residual network's output combined with it, its labels, the prior's
  own readiness (the fallback), ``minus_gravity`` and the identification while learning --
  :class:`~invdyn_ros.pipeline.pipeline_physics.PriorSide`, which owns the physics stage.
* **References** (:meth:`predict_reference`) run on predictors of their own beside the measured
  stream: :class:`~invdyn_ros.pipeline.pipeline_reference.ReferencePath`.

The core never imports rclpy; the node is a thin translator around this class. What stays here:
``process`` / ``finish``, one chain whose stages share the per-sample state (the feature row, the
pending sample, the predictors and their weight loads); the sides that stand alone are modules of
their own (``pipeline_learning``, ``pipeline_physics``, ``pipeline_reference``, ``replay`` for the
batch forms, ``outputs``, ``labels``). Just over 500 lines, a third of them this docstring and the
process / finish contract.
"""
from __future__ import annotations

import collections
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.checkpoints import (checkpoint_files, checkpoint_prefix,
                                             checkpoint_to_resume, fresh_checkpoint_path,
                                             read_physics)
from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.learning.trainers import ThreadTrainer
from invdyn_ros.learning.training import TRAINER_KINDS, make_trainer
from invdyn_ros.pipeline.config import PipelineConfig
from invdyn_ros.pipeline.parameters import NODE_ONLY_PARAMETERS, PIPELINE_PARAMETERS
from invdyn_ros.pipeline.pipeline_learning import LearningSide  # noqa: F401 (re-exported)
from invdyn_ros.pipeline.pipeline_physics import PriorSide
from invdyn_ros.pipeline.pipeline_reference import ReferencePath
from invdyn_ros.pipeline.replay import BATCH_CHUNK as _BATCH_CHUNK
from invdyn_ros.pipeline.replay import predict_windows, replay
from invdyn_ros.stages.estimation import StreamingEstimator
from invdyn_ros.stages.filters import FilterConfig
from invdyn_ros.stages.identifier import DualIdentifier
from invdyn_ros.stages.labels import DelayedEffort
from invdyn_ros.stages.outputs import BatchOutput, Output, Published
from invdyn_ros.stages.readiness import Readiness
from invdyn_ros.stages.windows import WindowBuffer

__all__ = ['PipelineConfig', 'Pipeline', 'Output', 'Published', 'BatchOutput', 'ThreadTrainer',
           'make_trainer', 'PIPELINE_PARAMETERS', 'NODE_ONLY_PARAMETERS', 'TRAINER_KINDS', 'checkpoint_files',
           'checkpoint_to_resume', 'fresh_checkpoint_path', 'checkpoint_prefix']

#: An effort beyond ``torque_limits`` x this is not a torque the arm produced (a glitch, a wrong
#: unit): the sample is still predicted, its effort is never a label (see ``Pipeline``).
LABEL_LIMIT_MARGIN = 1.5
_checkpoint_prefix = checkpoint_prefix


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
        self.names = config.network_names
        self.dual = config.dual_enabled
        # efforts beyond the torque limits x LABEL_LIMIT_MARGIN are not labels (the estimator
        # keeps the sample and drops its effort, counted 'rejected_labels'): never learned,
        # never scored, never in the identifier; process and process_arrays alike
        label_limits = None if config.torque_limits is None \
            else LABEL_LIMIT_MARGIN * np.asarray(config.torque_limits, dtype=np.float64)

        def estimator(filt: FilterConfig) -> StreamingEstimator:
            return StreamingEstimator(n, filt, effort_limits=label_limits)

        self.estimator = estimator(config.filter)
        self.windows = WindowBuffer(L, 3 * n)
        self.identifier = DualIdentifier(n, config.dual_window, config.dual_hysteresis,
                                         names=(self.names[0], self.names[-1]),
                                         min_samples=min(10, config.dual_window))
        self._state = None
        self._limits = np.asarray(config.torque_limits, dtype=np.float64) \
            if config.torque_limits is not None else np.full(n, np.inf)
        self._neg_limits = -self._limits
        self._scale = np.asarray(config.effort_scale, dtype=np.float64) \
            if config.effort_scale is not None else None
        self._row = np.zeros(3 * n)
        self._resets_seen = 0
        # effort_label 'delayed': the newest scaled raw efforts (NaN rows: samples without)
        self._delayed = DelayedEffort(n) if config.effort_label == 'delayed' else None
        # readiness: the rolling nMSE of the published torque; its scale (var) is the primary
        # network's target scaler's variance, or the labels' variance with a prior
        def readiness() -> Readiness:
            return Readiness(n, config.ready_window, config.ready_nmse, config.unready_factor,
                             config.ready_min_samples, config.ready_min_seconds,
                             config.filter.max_gap_s)

        self.readiness = readiness()
        # the physics prior and the rules around it (residual labels, fallback, minus_gravity)
        self.prior = PriorSide(config, self.readiness, readiness, self._limits, estimator)
        self._observe = self.prior.observe if self.prior.estimator is not None else None
        self._raw: tuple | None = None
        self.physics = self.prior.stage          # the PhysicsStage, or None
        self.residual = self.prior.residual      # the residual network's name, or None
        self._pending_loads: collections.deque = collections.deque()
        self._pending: tuple | None = None
        self.counters = {
            'samples': 0, 'outputs': 0, 'warming_up': 0, 'dropped_nonfinite': 0,
            'submitted': 0, 'backlog_dropped': 0, 'weight_loads': 0, 'weight_load_errors': 0,
            'stream_resets': 0, 'references': 0, 'rejected_references': 0,
            'reference_outputs': 0, 'reference_restarts': 0, 'trainer_errors': 0,
        }
        # the networks: the measured stream's predictors, then the reference path's
        kinds = dict(config.networks())
        self.predictors = {name: Predictor(cfg.model, n, cfg.model_options, L)
                           for name, cfg in kinds.items()}
        self.references = ReferencePath(config, self.identifier, self.prior, self._limits,
                                        self.counters)
        self.ref_predictors = self.references.predictors
        # the trainer, its samples, its weights' polling and the checkpoint thread
        self.learning = LearningSide(trainer, self.counters, config.poll_every,
                                     config.joint_names)
        self.refresh_weights()

    # ------------------------------------------------------------------ weights
    @property
    def trainer(self) -> Any:
        return self.learning.trainer

    @property
    def trainer_error(self) -> str | None:
        """Why the trainer failed (the pipeline keeps predicting with the last weights)."""
        return self.learning.error

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
            self.readiness.var = np.square(predictor.out_scaler.std.astype(np.float64))

    def refresh_weights(self) -> bool:
        """Poll the trainer now and load any new weights into every predictor at once.

        Returns True if weights were loaded. (``process`` does the same incrementally.)"""
        if self.learning.saving:
            return False
        weights = self.learning.poll()
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

    def _push(self, name: str, row: np.ndarray, defer: bool = False) -> np.ndarray | None:
        """One network's prediction for ``row``: its streaming output, or -- for the residual
        network -- the prior plus the trusted residual (the prior alone while the network has no
        output yet; None if the prior failed on this sample)."""
        y = self.predictors[name].push(row, defer=defer)
        return self.prior.combine(y) if name == self.residual else y

    # the physics side's commands (pipeline_physics.PriorSide)
    def prior_torque(self, reference: bool = False) -> np.ndarray | None:
        """The prior alone, clamped (``PriorSide.prior_torque``)."""
        return self.prior.prior_torque(reference)

    @property
    def fallback_ready(self) -> bool:
        """The feedforward may carry the prior alone (``PriorSide.fallback_ready``)."""
        return self.prior.fallback_ready

    @property
    def prior_readiness(self) -> Readiness | None:
        return self.prior.prior_readiness

    def feedforward(self, torque: np.ndarray, q: np.ndarray) -> np.ndarray:
        """The command for ``torque`` at ``q`` (``PriorSide.feedforward``: total or
        minus_gravity)."""
        return self.prior.feedforward(torque, q)

    def _reset_streams(self) -> None:
        self.finish()
        if self._delayed is not None:
            self._delayed.reset()
        self.windows.reset()
        for p in self.predictors.values():
            p.reset_stream()
        self.counters['stream_resets'] += 1

    def process(self, stamp: float, q: Any, qd: Any = None, tau: Any = None,
                defer: bool = False) -> 'Output | Published | None':
        """One measured sample (stamp in s; q, qd, tau (n,) in joint order; qd / tau optional).

        Order per sample: predict (before training: prequential), choose per joint with the
        identifier statistics of the *previous* samples, clamp; then the bookkeeping -- window ->
        trainer, identifier update with this sample's errors, readiness score, weights.

        Two phases for the latency trick (publish now, complete later); nothing returned is
        changed afterwards. ``defer=False``: both at once, returns the complete :class:`Output`.
        ``defer=True`` returns a :class:`Published` right after the clamp (what the node
        publishes) and leaves the rest to :meth:`finish`, which returns the complete
        :class:`Output`. On that fast path only the networks that some joint currently uses
        predict (``DualIdentifier.needed`` / ``choose``), and of those only the read-out chain
        runs (``Predictor.push(row, defer=True)``); their other chains, the other network's
        prediction (it must still see every row), the selection's error spreads and uncertainty
        come in :meth:`finish`. Results are identical to ``defer=False``. A pending
        :meth:`finish` is done at the start of the next call anyway (its Output is dropped).
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
            if self._observe is not None:
                self._observe(stamp, q, qd, tau)
            return None
        if self._observe is not None:                # for the identification's estimator
            self._raw = (stamp, q, qd, tau)
        if self._delayed is not None:                # the label itself is made in finish()
            self._delayed.record(tau if state.tau is not None else None, est.delay_s,
                                 est.rate_hz)
        self._state = state
        self.prior.begin(state)
        row = self._row
        n = self.n
        row[:n] = state.q
        row[n:2 * n] = state.qd
        row[2 * n:] = state.qdd
        names, ident = self.names, self.identifier
        preds: dict[str, np.ndarray | None] = {}
        for i in ident.needed if self.dual else (0,):    # before training on this sample
            # defer: only the read-out chain now, the other chains in finish()
            preds[names[i]] = self._push(names[i], row, defer=defer)
        torque = ident.choose([preds.get(name) for name in names])
        active, sel = ident.active, None
        if torque is None:
            # warming up or a non-finite prediction: every network now, the identifier decides
            for name in names:
                if name not in preds:
                    preds[name] = self._push(name, row)
            sel = ident.select_from([preds[name] for name in names])
            if sel is None:
                c['warming_up'] += 1
            else:
                torque, active = sel.torque, sel.active
        out = None
        if torque is not None:
            # np.minimum/np.maximum: np.clip costs ~5 µs more per call on the hot path
            torque = np.minimum(torque, self._limits)
            np.maximum(torque, self._neg_limits, out=torque)
            if np.isfinite(torque).all():
                c['outputs'] += 1
                ready = self.readiness
                out = Published(stamp=state.stamp, q=state.q, qd=state.qd, qdd=state.qdd,
                                tau=state.tau, torque=torque, active=active,
                                ready=ready.ready, recent_nmse=ready.nmse)
            else:
                c['dropped_nonfinite'] += 1
                torque = None
        self._pending = (state.tau, preds, torque, out, sel)
        return out if defer else self.finish()

    def finish(self) -> Output | None:
        """The second phase of the last ``process(..., defer=True)``: the complete
        :class:`Output` of the published sample (None if none was published or nothing is
        pending), then the bookkeeping."""
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        tau, preds, torque, published, sel = pending
        names = self.names
        for name in names:
            if name in preds:                            # deferred chains of the fast path
                self.predictors[name].complete()
            else:                                        # the networks the fast path skipped
                preds[name] = self._push(name, self._row)
        ident = self.identifier
        out = None
        if published is not None:                        # with the statistics used for torque
            if sel is None:
                sel = ident.select_from([preds[name] for name in names])
            out = Output(**vars(published), predictions=preds, std_a=ident.std_a,
                         std_b=ident.std_b, uncertainty=self.prior.uncertainty(sel.uncertainty))
        self.windows.push(self._row)
        label = self._delayed.label() if self._delayed is not None else tau
        prior = self.prior
        if label is not None and self.windows.full and prior.learns():
            self.learning.submit(self.windows.window(), prior.labels(label))
        if self._observe is not None:
            self._observe(*self._raw)
        prior.learn(self._state, tau, self.estimator.rate_hz)
        if tau is not None:
            pa = preds[names[0]]
            pb = preds[names[-1]]
            if pa is not None and pb is not None:
                ident.update(pa, pb, tau)
            if torque is not None:
                self.readiness.update(torque, tau, self._state.stamp)
        self._housekeeping()
        return out

    #: Windows per ``Predictor.predict_many`` call in a replay (``replay.BATCH_CHUNK``)
    BATCH_CHUNK = _BATCH_CHUNK

    def process_batch(self, stamps: Sequence[float], q: Sequence[Any],
                      qd: Sequence[Any] | None = None, tau: Sequence[Any] | None = None
                      ) -> list[Output | None]:
        """Many recorded samples with LEARNING OFF: ``[process(stamp_i, q_i, qd_i, tau_i)]``, fast.

        The same as :meth:`process_arrays` (see there), returned as one ``Output`` (or None) per
        sample like :meth:`process` would; ``process_arrays`` is faster for long recordings."""
        return self.process_arrays(stamps, q, qd, tau).outputs()

    def process_arrays(self, stamps: Sequence[float], q: Any, qd: Any = None, tau: Any = None
                       ) -> 'BatchOutput':
        """Many recorded samples with LEARNING OFF, vectorized; the result as arrays
        (:func:`invdyn_ros.pipeline.replay.replay`: the batch forms of the stages, what differs from
        :meth:`process` and why)."""
        return replay(self, stamps, q, qd, tau)

    #: ``replay.predict_windows`` (trajectory_feedforward calls it through the pipeline)
    _predict_windows = staticmethod(predict_windows)

    def begin_batch(self) -> None:
        """Before a replay: finish a pending sample, load queued weights into every predictor
        (the weights are fixed for the whole batch)."""
        if self._pending is not None:
            self.finish()
        while self._pending_loads:
            self._load_one()

    def end_batch(self) -> None:
        """After a replay: the streams were not advanced row by row, so the next
        :meth:`process` starts a fresh window (its first L-1 samples warm up), as after a gap."""
        self.windows.reset()
        for p in self.predictors.values():
            p.reset_stream()

    def _housekeeping(self) -> None:
        """Weights in, checkpoint thread out, backlog drained: a bounded amount per sample."""
        if not self.learning.tidy():     # a checkpoint is being written: leave the trainer alone
            return
        if self._pending_loads:
            self._load_one()
            return
        weights = self.learning.poll_due()
        if weights:
            self._queue_weights(weights)

    # ------------------------------------------------------------------ references
    def predict_reference(self, q: Any, qd: Any, qdd: Any, stamp: float | None = None
                          ) -> np.ndarray | None:
        """Torque (n,) for a desired state, from predictors fed with the stream of references
        (:class:`~invdyn_ros.pipeline.pipeline_reference.ReferencePath`: why, and what it shares
        with the measured stream). ``stamp`` (s, any clock): a gap longer than the filter's
        ``max_gap_s`` since the previous reference restarts the window. Returns None while the
        window fills up or for an invalid reference (wrong length, NaN/Inf, beyond the estimator's
        magnitude limits; counted).
        """
        return self.references.predict(q, qd, qdd, stamp)

    # ------------------------------------------------------------------ state
    @property
    def ready(self) -> bool:
        return self.readiness.ready

    @property
    def recent_nmse(self) -> float:
        return self.readiness.nmse

    @property
    def filter_delay_s(self) -> float | None:
        """Delay of the published state (s) once the rate is known, else None."""
        return self.estimator.delay_s

    @property
    def settled_rate_hz(self) -> float | None:
        """The input rate (Hz) once its estimate has settled (not a burst's), else None."""
        est = self.estimator
        return est.rate_hz if est.rate_settled else None

    @property
    def filter_error(self) -> str | None:
        """Why there is no filter (the measured rate is too low for ``filter_cutoff_hz``)."""
        return self.estimator.filter_error

    @property
    def weights_version(self) -> dict[str, int]:
        return {name: p.version for name, p in self.predictors.items()}

    def stats(self) -> dict[str, Any]:
        """Counters and learner statistics for diagnostics (plain Python types)."""
        learners = self.learning.learner_stats()
        labels = self.config.predictor_labels
        trainer_counters = dict(getattr(self.trainer, 'counters', {}) or {})
        return {
            'pipeline': dict(self.counters),
            'estimator': dict(self.estimator.counters),
            'identifier': dict(self.identifier.counters),
            'trainer': trainer_counters,
            'learners': learners,
            'trainer_error': self.trainer_error,
            'ready': self.ready,
            'ready_since': self.readiness.ready_since,
            'recent_nmse': self.recent_nmse if math.isfinite(self.recent_nmse) else None,
            'scored': self.readiness.scored,
            **self.prior.stats(),
            'weights_version': self.weights_version,
            # per joint: the chosen network, and 'rnea' where the residual's gate or trust
            # leaves the identified model alone
            'active': self.prior.active_labels(
                [labels[int(i)] for i in self.identifier.active] if self.dual
                else [labels[0]] * self.n, labels[0]),
            # per joint, changes of the active network since start (a joint flapping between
            # two predictors steps its torque with every change)
            'identifier_switches': [int(k) for k in self.identifier.switches_per_joint],
            'rate_hz': self.estimator.rate_hz,
            'filter_delay_s': self.estimator.delay_s,
            'checkpoint_running': self.learning.saving,
            'backlog': self.learning.backlog,
        }

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path: str | os.PathLike, final: bool = False) -> dict[str, str]:
        """Write the checkpoint set of every network now (blocking); returns ``{name: file}``.

        ``path`` is the user's ``checkpoint_path``; the files are :func:`checkpoint_files` and the
        manifest. The directory is created if needed. ``final`` (shutdown): a process trainer
        writes what it has learned without first learning its queued samples. Raises
        TrainerError / OSError on failure (the previous set stays the checkpoint).
        """
        return self.learning.save_checkpoint(path, self.prior.state_dict, final)

    def start_checkpoint(self, path: str | os.PathLike, on_done: Any = None) -> bool:
        """Start writing a checkpoint in a background thread (``process`` keeps running, the
        trainer is left alone until it is done); False if one is already running or the trainer
        has failed. :meth:`checkpoint_result` tells the outcome; ``on_done(ok, detail)``, if
        given, is also called with it (from the background thread)."""
        return self.learning.start_checkpoint(path, self.prior.state_dict, on_done)

    def resume_physics(self, path: str | os.PathLike) -> str | None:
        """Restore the physics stage from the checkpoint set at ``path`` (the user's
        ``checkpoint_path``), see :meth:`load_physics`; CheckpointError if the set does not fit
        the robot or a member is corrupt."""
        checkpoint_to_resume(self.config, path)            # the robot check of the networks
        return self.load_physics(read_physics(_checkpoint_prefix(path)))

    def load_physics(self, states: Mapping[int, dict]) -> str | None:
        """Load the identified parameters of ``states``
        (:func:`~invdyn_ros.learning.checkpoints.read_physics`) if they fit this URDF model
        (``PriorSide.load``); returns what happened for the log (None: no physics member)."""
        return self.prior.load(states)

    def save_checkpoint_wait(self, timeout: float | None = None) -> None:
        """Wait for a background save to end (it reports through checkpoint_result)."""
        self.learning.save_checkpoint_wait(timeout)

    @property
    def checkpoint_running(self) -> bool:
        return self.learning.checkpoint_running

    def checkpoint_result(self) -> tuple[bool, Any] | None:
        """``(True, {name: file})`` or ``(False, error)`` of the last finished background save,
        None while one runs or if none finished since the last call."""
        return self.learning.checkpoint_result()

    def close(self) -> None:
        """Wait for a running checkpoint and close the trainer."""
        self.learning.close()

    def __enter__(self) -> 'Pipeline':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

