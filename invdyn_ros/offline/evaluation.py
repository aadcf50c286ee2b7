"""Offline evaluation: replay a recorded joint stream through the node's own pipeline and score it.

"How well would invdyn_ros have learned this robot?" is answered by feeding the recorded samples,
in stamp order and much faster than real time, to exactly the code the live node runs:
:class:`invdyn_ros.pipeline.pipeline.Pipeline` with an in-process, deterministic
:class:`invdyn_ros.learning.training.InlineTrainer` (same estimator, filters, windows, scalers,
learner, predictors and dual identifier). Nothing here re-implements that chain; this module only
decides what is learned when and compares the outputs with the measured torques. ROS-free.

Models (``MODELS``):

- ``lstm``, ``gru``, ``mlp``, ``va_sta_reslstm``: one network, ``dual_enabled=False`` and the
  learner's ``model`` set to the kind; the scored prediction is the pipeline's published
  ``Output.torque`` (clamped to ``torque_limits`` as the node would publish it).
- ``dual``: the configured primary and second network with the dual identifier
  (``dual_enabled=True``); scored on the identifier's selected torque. Each network's own
  prediction is scored too (``details.networks``), and the per-joint choice is recorded.
- ``naive``: the mean torque of the training part
  (:class:`invdyn_ros.offline.baselines.NaiveBaseline`).
- ``gp``: :class:`invdyn_ros.offline.baselines.GPBaseline`, one GP per joint on ``gp_samples``
  points.

``naive`` and ``gp`` see the same features as the networks' newest window row: the output of a
:class:`~invdyn_ros.stages.estimation.StreamingEstimator` with the pipeline's filter configuration,
fed the same samples (the estimator is deterministic, so these are the very states the pipeline
computed). The same states' filtered torques are the labels every model is scored against: the label
of a prediction for stamp k is the filtered measured torque of stamp k (same filter delay on every
channel, see :mod:`invdyn_ros.stages.estimation`).

Protocols (``PROTOCOLS``), with ``n_train = floor(train_fraction * samples)`` raw samples:

- ``split``: the first ``n_train`` samples are streamed with learning on (as the live node would
  see them). One online pass has not converged, so each network's learner then runs ``epochs``
  more passes over its replay buffer (``epochs * ceil(len(buffer) / batch_size)`` Adam steps,
  batches drawn uniformly from the whole buffer; see
  :func:`invdyn_ros.offline.eval_networks.extra_epochs`). The rest is streamed with learning OFF
  (``Pipeline.process_arrays``: nothing reaches the trainer, the predictors keep the final
  weights) and scored.
  naive/gp are fitted on the training part's states and predict the test part.
- ``prequential``: every sample is predicted before it is learned, exactly as the live node
  does; every sample with a prediction is scored. naive predicts the running mean of the torques
  seen so far; gp is :class:`~invdyn_ros.offline.baselines.PrequentialGP` (refit every
  ``gp_refit_every`` samples on a subsample of a sliding window).

nMSE (:func:`invdyn_ros.metrics.nmse`) is standardized with the mean/std of the filtered torques of
the first ``n_train`` samples, for both protocols and every model (for prequential this is a fixed,
documented choice of scale, so numbers of the two protocols are comparable; std floored at
``1e-6``). All models are scored on the same samples: the stamps of the scored part where every
evaluated model produced a prediction (``test_samples``); ``coverage`` reports per model which
fraction of the scored part's states it had a prediction for.

Timing (``train_seconds``, ``predict_seconds``): for networks under ``split``, the wall time of the
training stream plus the extra epochs, and of the test stream (inference-only replay with
:meth:`~invdyn_ros.pipeline.pipeline.Pipeline.process_arrays`: the batch forms of the estimator, the
networks (all windows in large batches), the identifier and the readiness score; the same outputs
as ``process`` per sample up to float32 rounding, much faster); under ``prequential``, the time spent inside the trainer
(learning) and the rest of the pass. ``realtime_factor`` is the scored part's stream duration
divided by ``predict_seconds``.

This module holds :func:`evaluate` (options, the common scored samples, nMSE, learning curves);
its parts, all re-exported here: :mod:`~invdyn_ros.offline.eval_models` (model and protocol names,
defaults, each model's node parameters), :mod:`~invdyn_ros.offline.eval_stream` (the input stream
and its reference states), :mod:`~invdyn_ros.offline.eval_networks` (the networks' pipeline runs),
:mod:`~invdyn_ros.offline.eval_state_models` (naive, gp, rnea, identified) and
:mod:`~invdyn_ros.offline.eval_report` (results, metrics.json, tables).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterable, Mapping

import numpy as np

from invdyn_ros import metrics
from invdyn_ros.errors import ConfigError, DatasetError
# the evaluator's parts, re-exported: ``from invdyn_ros.offline.evaluation import ...`` keeps working
from invdyn_ros.offline.eval_models import (BASELINE_MODELS, DEFAULT_EPOCHS,  # noqa: F401
                                            DEFAULT_GP_REFIT_EVERY, DEFAULT_GP_SAMPLES, MODELS,
                                            NETWORK_MODELS, PHYSICS_MODELS, PROTOCOLS,
                                            RESIDUAL_MODELS, ProgressFn, parse_models,
                                            pipeline_filter)
from invdyn_ros.offline.eval_networks import run_network
from invdyn_ros.offline.eval_report import EvalReport, ModelResult, Series, jsonable  # noqa: F401
from invdyn_ros.offline.eval_state_models import run_baseline, run_physics
from invdyn_ros.offline.eval_stream import (ReferenceStates, Stream, as_stream,  # noqa: F401
                                            reference_states)
from invdyn_ros.stages.readiness import window_nmse, window_sums

__all__ = ['NETWORK_MODELS', 'BASELINE_MODELS', 'MODELS', 'PROTOCOLS', 'DEFAULT_EPOCHS',
           'DEFAULT_GP_SAMPLES', 'DEFAULT_GP_REFIT_EVERY', 'Stream', 'ModelResult', 'Series',
           'EvalReport', 'as_stream', 'parse_models', 'reference_states', 'evaluate']

#: Floor of the training torque std used to standardize nMSE (a joint whose torque never changed).
NMSE_STD_FLOOR = 1e-6


# =========================================================================== evaluate
def _curve(t: np.ndarray, y: np.ndarray, pred: np.ndarray, std: np.ndarray,
           mask: np.ndarray, bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """nMSE (mean over joints; ``readiness.window_nmse``) in consecutive bins of the masked
    samples: (bin times, values)."""
    idx = np.flatnonzero(mask & np.isfinite(pred).all(axis=1))
    if idx.size == 0:
        return np.empty(0), np.empty(0)
    size = max(20, int(math.ceil(idx.size / bins)))
    lo = np.arange(0, idx.size, size)
    hi = np.minimum(lo + size, idx.size)
    full = hi - lo >= max(5, size // 4)           # a short last bin is left out
    lo, hi = lo[full], hi[full]
    ts = window_sums(t[idx], lo, hi) / (hi - lo)
    return ts, window_nmse(pred[idx] - y[idx], np.square(std), lo, hi)


def evaluate(samples_or_recording: Any, models: str | Iterable[str] = ('naive', 'lstm'),
             protocol: str = 'split', train_fraction: float = 0.8,
             params: Mapping[str, Any] | None = None, seed: int | None = None,
             progress: ProgressFn | None = None, *, epochs: int = DEFAULT_EPOCHS,
             gp_samples: int = DEFAULT_GP_SAMPLES, gp_refit_every: int = DEFAULT_GP_REFIT_EVERY,
             bag: str | None = None, topic: str | None = None) -> EvalReport:
    """Evaluate ``models`` on a recorded stream under ``protocol``; see the module docstring.

    ``params``: the node's flat parameters (``PipelineConfig.from_params``); ``joint_names``,
    ``model`` and ``dual_enabled`` are set per model. ``seed`` (learner initialisation and
    sampling, GP subsample): None takes ``params['seed']`` (else 0); an integer overrides it.
    ``progress(label, done, total)`` is called during every stage. Raises :class:`ConfigError`
    for bad options and :class:`DatasetError` for a stream too short to evaluate.
    """
    wall0 = time.perf_counter()
    models = parse_models(models)
    if protocol not in PROTOCOLS:
        raise ConfigError(f'protocol must be one of {PROTOCOLS}, got {protocol!r}')
    try:
        train_fraction = float(train_fraction)
    except (TypeError, ValueError):
        raise ConfigError(f'train_fraction must be a number, got {train_fraction!r}') from None
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f'train_fraction must be in (0, 1), got {train_fraction}')
    for label, value, low in (('epochs', epochs, 0), ('gp_samples', gp_samples, 2),
                              ('gp_refit_every', gp_refit_every, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConfigError(f'{label} must be an integer >= {low}, got {value!r}')
    if params is not None and not isinstance(params, Mapping):
        raise ConfigError(f'params must be a mapping of node parameters, '
                          f'got {type(params).__name__}')
    params = dict(params or {})
    if seed is None:
        seed = params.get('seed', 0)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f'seed must be an integer, got {seed!r}')
    seed = int(seed)
    stream = as_stream(samples_or_recording, params.get('joint_names'))
    N, n = len(stream), stream.n_joints
    n_train = int(math.floor(train_fraction * N))
    if n_train < 1 or n_train >= N:
        raise DatasetError(f'{N} samples are too few to split at train_fraction={train_fraction}')

    # --- the states every model is scored on (the pipeline's own estimator, same inputs)
    filter_cfg, effort_scale = pipeline_filter(params, stream.joint_names, seed)
    ref = reference_states(stream, filter_cfg, effort_scale)
    train_mask = np.zeros(N, dtype=bool)
    train_mask[:n_train] = True
    train_rows = ref.labeled & train_mask
    if train_rows.sum() < 2:
        raise DatasetError(f'the training part ({n_train} samples) gave {int(train_rows.sum())} '
                           f'labeled estimator states; need at least 2 (record longer, with '
                           f'efforts)')
    y_mean = ref.tau[train_rows].mean(axis=0)
    y_std = np.maximum(ref.tau[train_rows].std(axis=0), NMSE_STD_FLOOR)
    scored_part = ref.labeled & (~train_mask if protocol == 'split' else np.ones(N, dtype=bool))
    if not scored_part.any():
        raise DatasetError('no labeled samples to score (the scored part has no estimator states '
                           'with efforts)')

    # --- run every model: predictions per raw sample (NaN where none)
    preds: dict[str, np.ndarray] = {}
    timing: dict[str, tuple[float, float]] = {}
    details: dict[str, dict] = {}
    runs: dict[str, dict] = {}
    for model in models:
        if model in BASELINE_MODELS:
            pred, tr_s, pr_s, det = run_baseline(model, ref, protocol, train_mask, gp_samples,
                                                 gp_refit_every, seed, progress)
        elif model in PHYSICS_MODELS:
            pred, tr_s, pr_s, det = run_physics(model, ref, protocol, train_mask, params,
                                                stream.joint_names, seed, stream)
        else:
            run = run_network(model, stream, params, protocol, n_train, epochs, seed, progress)
            runs[model] = run
            pred, tr_s, pr_s = run['torque'], run['train_seconds'], run['predict_seconds']
            det = {'learner': run['learner_stats'], 'pipeline': run['pipeline_stats']}
            if protocol == 'split':
                det['extra_steps'] = run['extra_steps']
            # the pipeline's own labels (Output.tau) must be the reference states' torques
            lab = np.isfinite(run['labels']).all(axis=1)
            det['label_mismatches'] = int(np.count_nonzero(
                ~np.isclose(run['labels'][lab], ref.tau[lab], rtol=1e-9, atol=1e-9).all(axis=1)))
            ready_idx = np.flatnonzero(run['ready'])
            det['ready_after_s'] = (float(stream.stamps[ready_idx[0]] - stream.stamps[0])
                                    if ready_idx.size else None)
        preds[model] = pred
        timing[model] = (tr_s, pr_s)
        details[model] = det

    # --- one common set of scored samples
    has = {m: np.isfinite(p).all(axis=1) for m, p in preds.items()}
    common = scored_part.copy()
    for m in models:
        common &= has[m]
    if not common.any():
        missing = [m for m in models if not (has[m] & scored_part).any()]
        raise DatasetError(f'no scored sample has a prediction from every model (none from '
                           f'{", ".join(missing) or "all"}); the recording is too short')
    y = ref.tau[common]
    t_scored = ref.t[common]
    # the stream time that was replayed while scoring: the test part (split) or everything
    test_seconds = float(stream.stamps[-1] - stream.stamps[n_train]) if protocol == 'split' \
        else stream.duration
    results = []
    for m in models:
        s = metrics.summary(y, preds[m][common], y_mean, y_std)
        tr_s, pr_s = timing[m]
        det = details[m]
        run = runs.get(m)
        if run is not None and m == 'dual':
            nets = {}
            for name, p in run['networks'].items():
                ok = common & np.isfinite(p).all(axis=1)
                if ok.any():
                    nets[name] = metrics.summary(ref.tau[ok], p[ok], y_mean, y_std)
            det['networks'] = nets
            act = run['active'][common]
            det['second_network_fraction'] = np.mean(act == 1, axis=0).tolist()
            det['network_names'] = list(run['dual_names'])
        results.append(ModelResult(
            model=m, nmse=s['nmse'], nmse_mean=s['nmse_mean'], mse=s['mse'],
            train_seconds=float(tr_s), predict_seconds=float(pr_s),
            scored_samples=int(common.sum()),
            coverage=float((has[m] & scored_part).sum() / scored_part.sum()),
            realtime_factor=(test_seconds / pr_s) if pr_s > 0 and test_seconds > 0 else None,
            details=det))

    # --- series for plots / predictions.npz
    curve_mask = ref.labeled
    curves = {m: _curve(ref.t, ref.tau, preds[m], y_std, curve_mask) for m in models}
    series = Series(t=t_scored, measured=y, predictions={m: preds[m][common] for m in models},
                    curves=curves,
                    learning_stops_at=float(stream.stamps[n_train]) if protocol == 'split'
                    else None)
    if 'dual' in runs:
        act = runs['dual']['active']
        rows = (act >= 0).all(axis=1)
        series.dual_t = stream.stamps[rows]
        series.dual_active = act[rows]
        series.dual_names = runs['dual']['dual_names']

    rate = stream.meta.get('rate_hz') if isinstance(stream.meta, Mapping) else None
    source = {k: v for k, v in dict(stream.meta).items()
              if k in ('source', 'topic', 'name', 'rate_hz', 'messages', 'skipped',
                       'velocity_missing')}
    report = EvalReport(
        bag=bag, topic=topic, protocol=protocol, train_fraction=train_fraction,
        joint_names=list(stream.joint_names), samples=N, stream_seconds=stream.duration,
        wall_seconds=0.0, results=results, train_samples=int(train_rows.sum()),
        test_samples=int(common.sum()), test_stream_seconds=test_seconds,
        epochs=int(epochs) if protocol == 'split' else None,
        gp_samples=int(gp_samples) if 'gp' in models else None,
        gp_refit_every=int(gp_refit_every) if ('gp' in models and protocol == 'prequential')
        else None,
        seed=int(seed),
        nmse_reference={'definition': 'metrics.nmse: MSE of torques standardized with the mean '
                                      'and std (ddof=0) of the filtered torques of the first '
                                      'train_fraction of the samples',
                        'mean': y_mean.tolist(), 'std': y_std.tolist()},
        estimator={'counters': ref.counters, 'rate_hz': rate,
                   'filter': dataclasses.asdict(filter_cfg)
                   if dataclasses.is_dataclass(filter_cfg) else str(filter_cfg)},
        source=source, params=jsonable(params), series=series)
    report.wall_seconds = time.perf_counter() - wall0
    return report
