"""The evaluator's models that need no pipeline: ``naive`` / ``gp`` and ``rnea`` / ``identified``.

They run on the reference estimator states (:func:`invdyn_ros.offline.eval_stream.reference_states`:
the features ``[q, qd, qdd]`` of the networks' newest window row and the filtered torques) under
both protocols, and each returns ``(predictions (N, n), train s, predict s, details)``. ROS-free.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Mapping, Sequence

import numpy as np

from invdyn_ros.offline.baselines import GPBaseline, NaiveBaseline, PrequentialGP
from invdyn_ros.offline.eval_models import ProgressFn, pipeline_params
from invdyn_ros.offline.eval_stream import ReferenceStates, Stream, reference_states

__all__ = ['run_physics', 'run_baseline']


def run_physics(model: str, ref: ReferenceStates, protocol: str, train_mask: np.ndarray,
                params: Mapping[str, Any], joint_names: Sequence[str], seed: int,
                stream: Stream | None = None) -> tuple[np.ndarray, float, float, dict]:
    """rnea / identified on the estimator's states: the pipeline's own physics stage
    (``residual.PhysicsStage``); ``identified`` learns on the training part (split) or on every
    sample after predicting it (prequential), like the pipeline -- with
    ``identification_cutoff_hz`` on the states of an estimator of that cutoff over ``stream``,
    as the pipeline's identification does."""
    from invdyn_ros.pipeline.pipeline import PipelineConfig
    from invdyn_ros.stages.residual import PhysicsStage

    config = PipelineConfig.from_params(pipeline_params(params, 'residual_lstm', joint_names,
                                                         seed))
    phys = dataclasses.replace(config.physics, identify=model == 'identified')
    stage = PhysicsStage(phys, config.joint_names, seed=seed)
    own = None                     # the identification's own estimator states
    if phys.identify and config.identification_filter is not None:
        if stream is None:
            raise ValueError('identification_cutoff_hz needs the stream (run_physics(stream=))')
        own = reference_states(stream, config.identification_filter, config.effort_scale)
    stage.set_rate(1.0 / float(np.median(np.diff(ref.t[ref.valid])))
                   if ref.valid.sum() > 2 else None)
    N, n = ref.tau.shape
    pred = np.full((N, n), np.nan)
    q, qd, qdd = ref.X[:, :n], ref.X[:, n:2 * n], ref.X[:, 2 * n:]
    t0 = time.perf_counter()
    learn_rows = ref.labeled & (train_mask if protocol == 'split' else True)
    for i in np.flatnonzero(ref.valid):
        tp = stage.begin(q[i], qd[i], qdd[i])
        if protocol == 'prequential' and tp is not None:
            pred[i] = tp
        if learn_rows[i] and tp is not None:
            ident = None if own is None else () if not own.labeled[i] else (
                own.X[i, :n], own.X[i, n:2 * n], own.X[i, 2 * n:], own.tau[i])
            stage.learn(q[i], qd[i], qdd[i], ref.tau[i], ident)
    t1 = time.perf_counter()
    if protocol == 'split':
        test = ref.valid & ~train_mask
        pred[test] = stage.prior.predict_many(q[test], qd[test], qdd[test])
    t2 = time.perf_counter()
    return pred, t1 - t0, t2 - t1, stage.model_report()


def run_baseline(model: str, ref: ReferenceStates, protocol: str, train_mask: np.ndarray,
                 gp_samples: int, gp_refit_every: int, seed: int, progress: ProgressFn | None
                 ) -> tuple[np.ndarray, float, float, dict]:
    """naive / gp on the estimator's states: (predictions (N, n), train s, predict s, details)."""
    N, n = ref.tau.shape
    pred = np.full((N, n), np.nan)
    rows = ref.labeled
    if progress is not None:
        progress(f'{model}: fit', 0, 1)
    det: dict[str, Any] = {}
    if protocol == 'split':
        train_rows = rows & train_mask
        t0 = time.perf_counter()
        if model == 'naive':
            est = NaiveBaseline().fit(ref.X[train_rows], ref.tau[train_rows])
        else:
            est = GPBaseline(n_samples=gp_samples, seed=seed)
            on_joint = None if progress is None else \
                (lambda j, total: progress('gp: fit per joint', j, total))
            est.fit(ref.X[train_rows], ref.tau[train_rows], on_joint=on_joint)
        t1 = time.perf_counter()
        test_rows = rows & ~train_mask
        if test_rows.any():
            pred[test_rows] = est.predict(ref.X[test_rows])
        t2 = time.perf_counter()
        if model == 'gp':
            det = {'gp_samples': est.n_fit_, 'per_joint': True,
                   'hyperparameter_samples': min(est.opt_samples, est.n_fit_),
                   'kernels': [str(m.kernel_) for m in est.models_]}
        tr_s, pr_s = t1 - t0, t2 - t1
    else:
        idx = np.flatnonzero(rows)
        t0 = time.perf_counter()
        if model == 'naive':
            Y = ref.tau[idx]
            csum = np.cumsum(Y, axis=0)
            out = np.full_like(Y, np.nan)
            if len(Y) > 1:
                out[1:] = csum[:-1] / np.arange(1, len(Y))[:, None]
            pred[idx] = out
            det = {'prediction': 'running mean of the torques seen so far'}
        else:
            gp = PrequentialGP(n, n_samples=gp_samples, refit_every=gp_refit_every, seed=seed)
            out = gp.run(ref.X[idx], ref.tau[idx])
            if len(out):
                out[0] = np.nan   # nothing learned yet: no prediction
            pred[idx] = out
            det = {'gp_samples': gp.gp.n_samples, 'refit_every': gp.refit_every,
                   'window': gp.window, 'fits': gp.fits,
                   'hyperparameter_optimizations': gp.optimizations, 'per_joint': True}
        # predict-then-learn is one interleaved pass: report it all as training time
        tr_s, pr_s = time.perf_counter() - t0, 0.0
    if progress is not None:
        progress(f'{model}: fit', 1, 1)
    return pred, tr_s, pr_s, det

