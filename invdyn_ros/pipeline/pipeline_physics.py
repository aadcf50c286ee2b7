"""The pipeline's side toward the robot's physics: what the prior adds around the networks.

:class:`PriorSide` owns a :class:`~invdyn_ros.pipeline.pipeline.Pipeline`'s
:class:`~invdyn_ros.stages.residual.PhysicsStage` (``prior: rnea``: the URDF prior, its online
identification and the visited region; or, for ``feedforward_mode: minus_gravity`` without a
prior, only the model's gravity) and the rules that tie it to the pipeline's other stages:

* **The residual network's prediction and labels.** The residual network (``residual``, the
  primary one) predicts ``tau - tau_prior``: its output is ``prior + trust * residual``
  (:meth:`combine`; the prior alone while the network has no output) and its label is
  ``label - tau_prior`` (:meth:`labels`; with the dual identifier the black-box network keeps the
  plain label). A sample whose prior is not finite (:attr:`ok` false after :meth:`begin`) gives
  the residual network no prediction and no label.
* **Learning, off the latency path** (:meth:`learn`, from ``Pipeline.finish``): identification
  at the estimator's rate (on the states and torques of an estimator of its own when
  ``identification_cutoff_hz`` is set: :meth:`observe` gets every measured sample), the visited
  region, and -- with a prior -- the readiness score's scale:
  the labels' variance (floored at 0.1 % of the torque limit), since the residual network's
  target scaler describes the residual, not the torque.
* **The fallback** (``feedforward_fallback: prior``): the prior alone is scored like the learned
  prediction, by its own :class:`~invdyn_ros.stages.readiness.Readiness` on the same measured
  torques with the same thresholds, floors and variance; :attr:`fallback_ready` says the feedforward
  may carry it (:meth:`prior_torque`, clamped) while the learned prediction is not ready.
* **The command vendors expect** (:meth:`feedforward`): ``minus_gravity`` subtracts the identified
  model's ``g(q)`` and clamps again.
* **Its checkpoint member** (:meth:`load`): the identified parameters are resumed only into a
  model of the same parameter count; another one is left untouched on disk.

ROS-free; not thread-safe (the pipeline's one caller).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from invdyn_ros.errors import CheckpointError
from invdyn_ros.learning.scaling import RunningScaler
from invdyn_ros.pipeline.config import PipelineConfig
from invdyn_ros.stages.estimation import StreamingEstimator
from invdyn_ros.stages.filters import FilterConfig
from invdyn_ros.stages.readiness import Readiness
from invdyn_ros.stages.residual import PhysicsStage

__all__ = ['PriorSide']


class PriorSide:
    """The physics stage of one pipeline and the rules around it (module docstring).

    ``stage`` is the :class:`PhysicsStage` or None (no prior and ``feedforward_mode: total``);
    ``estimator`` the identification's own (``make_estimator(filter)``: the pipeline's, for the
    same effort limits) or None (``identification_cutoff_hz`` 0 or not below
    ``filter_cutoff_hz``, or nothing identified);
    ``residual`` the residual network's name or None (no prior); ``ok``: the prior of the current
    sample is finite (after :meth:`begin`).
    """

    def __init__(self, config: PipelineConfig, readiness: Readiness,
                 make_readiness: Callable[[], Readiness], limits: np.ndarray,
                 make_estimator: Callable[[FilterConfig], StreamingEstimator] | None = None
                 ) -> None:
        phys = config.physics
        n = config.n_joints
        if make_estimator is None:
            def make_estimator(filt: FilterConfig) -> StreamingEstimator:
                return StreamingEstimator(n, filt)
        self.stage = PhysicsStage(phys, config.joint_names, seed=config.learner.seed) \
            if phys.enabled or phys.feedforward_mode == 'minus_gravity' else None
        # the identification's own estimator (identification_cutoff_hz), fed by observe()
        own = config.identification_filter
        self.estimator = make_estimator(own) if own is not None and self.stage is not None \
            and self.stage.identification is not None else None
        self._ident: tuple | None = None
        self.residual = config.residual_network
        self.dual = config.dual_enabled
        self.minus_gravity = phys.feedforward_mode == 'minus_gravity'
        self.ok = False
        self._rate: float | None = None
        self._label_stats = RunningScaler(n)     # the labels' variance (the readiness scale)
        self._limits = limits
        self._neg_limits = -limits
        self._var_floor = np.where(np.isfinite(limits), np.square(1e-3 * limits), 1e-12)
        self.readiness = readiness               # the learned prediction's (its scale is set here)
        self.prior_readiness = make_readiness() \
            if self.residual is not None and phys.feedforward_fallback == 'prior' else None

    # ------------------------------------------------------------------ the fast path
    def begin(self, state: Any) -> None:
        """The prior of the sample ``state`` (the fast path's, before the networks)."""
        if self.residual is not None:
            self.ok = self.stage.begin(state.q, state.qd, state.qdd) is not None

    def combine(self, y: np.ndarray | None) -> np.ndarray | None:
        """The residual network's prediction from its output ``y``: prior + trusted residual
        (the prior alone while ``y`` is None); None if the prior failed on this sample."""
        return self.stage.combine(y) if self.ok else None

    def learns(self) -> bool:
        """Whether this sample may be learned from (no prior, or a finite one)."""
        return self.residual is None or self.ok

    def labels(self, label: np.ndarray) -> np.ndarray:
        """What each network learns for ``label``: the residual network ``label - tau_prior``
        (stacked with the black-box network's plain label in dual mode)."""
        if self.residual is None:
            return label
        res = label - self.stage.tau_prior
        return np.stack((res, label)) if self.dual else res

    def uncertainty(self, unc: np.ndarray) -> np.ndarray:
        """The published uncertainty: at least the physics stage's where the prior carries the
        prediction (``unc`` is updated in place and returned)."""
        if self.residual is not None and self.ok:
            np.maximum(unc, self.stage.uncertainty(), out=unc)
        return unc

    def evaluate(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                 residual: np.ndarray | None) -> np.ndarray | None:
        """The residual network's prediction for a reference (``PhysicsStage.evaluate``)."""
        return self.stage.evaluate(q, qd, qdd, residual)

    # ------------------------------------------------------------------ learning
    def observe(self, stamp: float, q: Any, qd: Any, tau: Any) -> None:
        """A measured sample as the pipeline got it (effort scaled), for the identification's
        own estimator: every sample, in order, also those the pipeline's estimator gives no state
        for (the two see the same stream). Off the latency path: ``Pipeline.finish``."""
        if self.estimator is not None:
            s = self.estimator.update(stamp, q, qd, tau)
            self._ident = (s.q, s.qd, s.qdd, s.tau) if s is not None and s.tau is not None \
                else ()

    def learn(self, state: Any, tau: np.ndarray | None, rate_hz: float | None) -> None:
        """Identification, visited region, label statistics (off the latency path)."""
        stage = self.stage
        if stage is None:
            return
        if rate_hz != self._rate:
            self._rate = rate_hz
            stage.set_rate(rate_hz)
        if tau is None:
            return
        if self.residual is None and stage.begin(state.q, state.qd, state.qdd) is None:
            return
        sampled = stage.learn(state.q, state.qd, state.qdd, tau,
                              self._ident if self.estimator is not None else None)
        if self.residual is not None and sampled:   # the readiness score's scale: var(label),
            # from the samples the physics stage keeps (a RunningScaler update costs ~50 µs)
            stats = self._label_stats.partial_fit(tau[None])
            if stats.count >= 2:  # floor: 0.1 % of the torque limit (a joint whose torque never
                # changes must not turn a 1e-9 N m error into an nMSE of 1e6)
                self.readiness.var = np.maximum(stats.var, self._var_floor)
                if self.prior_readiness is not None:
                    self.prior_readiness.var = self.readiness.var
        if self.prior_readiness is not None and self.ok:
            self.prior_readiness.update(self.prior_torque(), tau, state.stamp)

    # ------------------------------------------------------------------ the commands
    def prior_torque(self, reference: bool = False) -> np.ndarray | None:
        """The physics prior alone, clamped to ``torque_limits``: for the last measured sample
        (its fast path's ``tau_prior``) or, with ``reference``, for the last valid reference;
        None without a prior or when it was not finite there."""
        if self.residual is None:
            return None
        tp = self.stage.ref_prior if reference else (self.stage.tau_prior if self.ok else None)
        if tp is None:
            return None
        return np.clip(tp, self._neg_limits, self._limits)

    @property
    def fallback_ready(self) -> bool:
        """The feedforward may carry the prior alone (:meth:`prior_torque`): the learned
        prediction is not ready but the prior, scored on the same measured torques with the same
        thresholds and evidence floors, is (``feedforward_fallback: prior``)."""
        pr = self.prior_readiness
        return pr is not None and pr.ready and not self.readiness.ready

    def feedforward(self, torque: np.ndarray, q: np.ndarray) -> np.ndarray:
        """The command for a predicted (clamped) ``torque`` at position ``q``:
        ``feedforward_mode`` total -> the torque; minus_gravity -> torque - g(q) of the
        identified model, clamped to ``torque_limits`` again."""
        if not self.minus_gravity:
            return torque
        cmd = torque - self.stage.gravity(np.asarray(q, dtype=np.float64))
        np.clip(cmd, self._neg_limits, self._limits, out=cmd)
        return cmd

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict | None:
        return self.stage.state_dict() if self.stage is not None else None

    def load(self, states: Mapping[int, dict]) -> str | None:
        """Load the member of ``states`` (:func:`~invdyn_ros.learning.checkpoints.read_physics`)
        whose parameter count is this URDF model's; returns what happened for the log (None: the set
        has no physics member). One of another model size is not used (a warning; the stage
        starts fresh and the file stays as it is); CheckpointError if the right-sized one does not
        load."""
        if not states:
            return None
        if self.stage is None:
            return 'checkpoint: identified parameters not used (no physics stage configured)'
        n = len(self.stage.prior.theta)
        if n not in states:
            return (f'WARNING checkpoint: the identified parameters are of a model with '
                    f'{sorted(states)} parameters, this URDF gives {n}: the physics stage starts '
                    f'fresh (the saved ones are kept untouched)')
        try:
            self.stage.load_state_dict(states[n])
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise CheckpointError(f'checkpoint: physics member does not fit this model: '
                                  f'{type(exc).__name__}: {exc}') from exc
        return f'checkpoint: physics stage resumed ({n} identified parameters)'

    def active_labels(self, labels: list[str], residual_label: str) -> list[str]:
        """Per joint, what its prediction really is: ``labels`` (the active network's label per
        joint) with ``residual_label`` (``rnea+lstm``) replaced by the prior's name (``rnea``)
        where the residual does not count (``PhysicsStage.residual_counts``: its gate closed or
        not trusted here, so the identified model alone)."""
        if self.residual is None:
            return labels
        counts = self.stage.residual_counts()
        return [label if label != residual_label or counts[j] else self.stage.config.prior
                for j, label in enumerate(labels)]

    def stats(self) -> dict[str, Any]:
        """The fallback's readiness and the physics stage's statistics, for diagnostics."""
        pr = self.prior_readiness
        return {
            'prior_ready': pr.ready if pr is not None else None,
            'prior_nmse': pr.nmse if pr is not None and np.isfinite(pr.nmse) else None,
            'physics': self.stage.stats() if self.stage is not None else None,
        }
