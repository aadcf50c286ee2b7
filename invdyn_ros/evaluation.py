"""Offline evaluation: replay a recorded joint stream through the node's own pipeline and score it.

"How well would invdyn_ros have learned this robot?" is answered by feeding the recorded samples,
in stamp order and much faster than real time, to exactly the code the live node runs:
:class:`invdyn_ros.pipeline.Pipeline` with an in-process, deterministic
:class:`invdyn_ros.training.InlineTrainer` (same estimator, filters, windows, scalers, learner,
predictors and dual identifier). Nothing here re-implements that chain; this module only decides
what is learned when and compares the outputs with the measured torques. ROS-free.

Models (``MODELS``):

- ``lstm``, ``gru``, ``mlp``, ``va_sta_reslstm``: one network, ``dual_enabled=False`` and the
  learner's ``model`` set to the kind; the scored prediction is the pipeline's published
  ``Output.torque`` (clamped to ``torque_limits`` as the node would publish it).
- ``dual``: the configured primary and second network with the dual identifier
  (``dual_enabled=True``); scored on the identifier's selected torque. Each network's own
  prediction is scored too (``details.networks``), and the per-joint choice is recorded.
- ``naive``: the mean torque of the training part (:class:`invdyn_ros.baselines.NaiveBaseline`).
- ``gp``: :class:`invdyn_ros.baselines.GPBaseline`, one GP per joint on ``gp_samples`` points.

``naive`` and ``gp`` see the same features as the networks' newest window row: the output of a
:class:`~invdyn_ros.estimation.StreamingEstimator` with the pipeline's filter configuration, fed the
same samples (the estimator is deterministic, so these are the very states the pipeline computed).
The same states' filtered torques are the labels every model is scored against: the label of a
prediction for stamp k is the filtered measured torque of stamp k (same filter delay on every
channel, see :mod:`invdyn_ros.estimation`).

Protocols (``PROTOCOLS``), with ``n_train = floor(train_fraction * samples)`` raw samples:

- ``split``: the first ``n_train`` samples are streamed with learning on (as the live node would
  see them). One online pass has not converged, so each network's learner then runs ``epochs``
  more passes over its replay buffer (``epochs * ceil(len(buffer) / batch_size)`` Adam steps,
  batches drawn uniformly from the whole buffer; see :func:`_extra_epochs`). The rest is streamed
  with learning OFF (``Pipeline.process_arrays``: nothing reaches the trainer, the predictors
  keep the final weights) and scored.
  naive/gp are fitted on the training part's states and predict the test part.
- ``prequential``: every sample is predicted before it is learned, exactly as the live node
  does; every sample with a prediction is scored. naive predicts the running mean of the torques
  seen so far; gp is :class:`~invdyn_ros.baselines.PrequentialGP` (refit every ``gp_refit_every``
  samples on a subsample of a sliding window).

nMSE (:func:`invdyn_ros.metrics.nmse`) is standardized with the mean/std of the filtered torques of
the first ``n_train`` samples, for both protocols and every model (for prequential this is a fixed,
documented choice of scale, so numbers of the two protocols are comparable; std floored at
``1e-6``). All models are scored on the same samples: the stamps of the scored part where every
evaluated model produced a prediction (``test_samples``); ``coverage`` reports per model which
fraction of the scored part's states it had a prediction for.

Timing (``train_seconds``, ``predict_seconds``): for networks under ``split``, the wall time of the
training stream plus the extra epochs, and of the test stream (inference-only replay with
:meth:`~invdyn_ros.pipeline.Pipeline.process_arrays`: the batch forms of the estimator, the
networks (all windows in large batches), the identifier and the readiness score; the same outputs
as ``process`` per sample up to float32 rounding, much faster); under ``prequential``, the time spent inside the trainer
(learning) and the rest of the pass. ``realtime_factor`` is the scored part's stream duration
divided by ``predict_seconds``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from invdyn_ros import metrics
from invdyn_ros.baselines import GPBaseline, NaiveBaseline, PrequentialGP
from invdyn_ros.errors import ConfigError, DatasetError
from invdyn_ros.readiness import window_nmse, window_sums

__all__ = ['NETWORK_MODELS', 'BASELINE_MODELS', 'MODELS', 'PROTOCOLS', 'DEFAULT_EPOCHS',
           'DEFAULT_GP_SAMPLES', 'DEFAULT_GP_REFIT_EVERY', 'Stream', 'ModelResult', 'Series',
           'EvalReport', 'as_stream', 'parse_models', 'reference_states', 'evaluate']

NETWORK_MODELS: tuple[str, ...] = ('lstm', 'gru', 'mlp', 'va_sta_reslstm')
BASELINE_MODELS: tuple[str, ...] = ('naive', 'gp')
#: need the robot model (``urdf_path`` / ``robot_description``): the URDF's nominal model
#: (``rnea``), the model with parameters identified on the training part (``identified``), and
#: each network learning the residual of the identified model (``residual_<network>``). With a
#: URDF, ``dual`` is the physics + residual network beside the black-box second network.
PHYSICS_MODELS: tuple[str, ...] = ('rnea', 'identified')
RESIDUAL_MODELS: tuple[str, ...] = tuple(f'residual_{m}' for m in NETWORK_MODELS)
MODELS: tuple[str, ...] = NETWORK_MODELS + ('gp', 'naive', 'dual') + PHYSICS_MODELS + \
    RESIDUAL_MODELS
PROTOCOLS: tuple[str, ...] = ('split', 'prequential')

#: Extra passes over the replay buffer after the training stream (split protocol). Measured on
#: the KUKA-I bag (16k training samples, 125 batches of 128 per pass; LSTM test nMSE): 0 epochs
#: 0.132, 30 epochs 0.116, 80 epochs 0.119 -- converged at ~30, which costs 3750 Adam steps, about
#: 1-1.5 min for an LSTM on one (shared) CPU core.
DEFAULT_EPOCHS = 30
DEFAULT_GP_SAMPLES = 1000
DEFAULT_GP_REFIT_EVERY = 500

#: Floor of the training torque std used to standardize nMSE (a joint whose torque never changed).
NMSE_STD_FLOOR = 1e-6

#: How often (in samples) the progress callback is called during a stream.
_PROGRESS_EVERY = 200

ProgressFn = Callable[[str, int, int], None]


# =========================================================================== the input stream
@dataclass(frozen=True)
class Stream:
    """Samples as the node would receive them, joint-ordered, in stamp order.

    ``stamps`` (N,) seconds; ``q`` (N, n); ``qd`` (N, n) with NaN where a message had no velocity
    (the estimator then differentiates positions) or None when no sample has one; ``tau`` (N, n)
    with NaN rows for samples without effort (never learned from or scored).
    """

    joint_names: tuple[str, ...]
    stamps: np.ndarray
    q: np.ndarray
    qd: np.ndarray | None
    tau: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def duration(self) -> float:
        return float(self.stamps[-1] - self.stamps[0]) if len(self) else 0.0

    # What a row means: a velocity row that is all NaN = the message had none; an effort row
    # with any NaN = the sample has no effort (never learned from or scored).
    @staticmethod
    def _no_velocity(qd: np.ndarray) -> np.ndarray:
        return np.isnan(qd).all(axis=-1)

    @staticmethod
    def _no_effort(tau: np.ndarray) -> np.ndarray:
        return np.isnan(tau).any(axis=-1)

    def sample(self, i: int) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(stamp, q, qd or None, tau or None)`` of row i, as ``Pipeline.process`` takes them."""
        qd = None
        if self.qd is not None and not self._no_velocity(self.qd[i]):
            qd = self.qd[i]
        tau = None if self._no_effort(self.tau[i]) else self.tau[i]
        return float(self.stamps[i]), self.q[i], qd, tau

    def columns(self, start: int, stop: int) -> tuple[Any, Any, Any, Any]:
        """Rows ``start:stop`` as ``Pipeline.process_arrays`` takes them, meaning exactly what
        :meth:`sample` passes to ``process`` per row: (N, n) arrays where every row is a full
        sample, lists with None where a row has no velocity or no effort."""
        sl = slice(start, stop)
        qd = self.qd[sl] if self.qd is not None else None
        if qd is not None:
            missing = self._no_velocity(qd)
            if missing.any():
                qd = [None if m else row for m, row in zip(missing, qd)]
        tau = self.tau[sl]
        no_tau = self._no_effort(tau)
        if no_tau.any():
            tau = [None if m else row for m, row in zip(no_tau, tau)]
        return self.stamps[sl], self.q[sl], qd, tau


def as_stream(samples_or_recording: Any, joint_names: Sequence[str] | None = None) -> Stream:
    """A :class:`Stream` from a :class:`~invdyn_ros.datasets.Recording`, a :class:`Stream`, or an
    iterable of ``(stamp, q, qd, tau)`` tuples (qd / tau may be None).

    Rows are kept in the given order (a recording's stamps are strictly increasing already; the
    estimator drops out-of-order stamps, as it would live). ``joint_names`` names the joints of
    tuples; for a Recording it selects and orders its joints (as the node orders by name). Raises
    :class:`DatasetError` for an empty or ragged input or a joint the recording lacks.
    """
    obj = samples_or_recording
    if isinstance(obj, Stream):
        return obj
    if hasattr(obj, 't') and hasattr(obj, 'q') and hasattr(obj, 'tau') \
            and hasattr(obj, 'joint_names'):
        if joint_names is not None and tuple(joint_names) != tuple(obj.joint_names) \
                and hasattr(obj, 'select_joints'):
            obj = obj.select_joints(tuple(joint_names))
        names = tuple(obj.joint_names)
        qd = None if obj.qd is None else np.asarray(obj.qd, dtype=np.float64)
        meta = dict(getattr(obj, 'meta', {}) or {})
        meta.setdefault('name', getattr(obj, 'name', ''))
        meta.setdefault('rate_hz', getattr(obj, 'rate_hz', None))
        stream = Stream(names, np.asarray(obj.t, dtype=np.float64),
                        np.asarray(obj.q, dtype=np.float64), qd,
                        np.asarray(obj.tau, dtype=np.float64), meta)
    else:
        rows = list(obj)
        if not rows:
            raise DatasetError('no samples to evaluate')
        try:
            n = len(np.asarray(rows[0][1]).ravel())
            stamps = np.array([float(r[0]) for r in rows])
            q = np.stack([np.asarray(r[1], dtype=np.float64).reshape(n) for r in rows])
            qd = np.full((len(rows), n), np.nan)
            tau = np.full((len(rows), n), np.nan)
            for i, r in enumerate(rows):
                if r[2] is not None and np.size(r[2]):
                    qd[i] = np.asarray(r[2], dtype=np.float64).reshape(n)
                if r[3] is not None and np.size(r[3]):
                    tau[i] = np.asarray(r[3], dtype=np.float64).reshape(n)
        except (TypeError, ValueError, IndexError) as err:
            raise DatasetError(f'samples must be (stamp, q, qd, tau) with equal joint counts: '
                               f'{err}') from None
        names = tuple(joint_names) if joint_names is not None else tuple(f'joint{i + 1}'
                                                                          for i in range(n))
        if len(names) != n:
            raise DatasetError(f'{len(names)} joint names for {n} joints')
        stream = Stream(names, stamps, q, None if np.isnan(qd).all() else qd, tau, {})
    n = stream.n_joints
    if len(stream) == 0:
        raise DatasetError('no samples to evaluate')
    for key in ('q', 'tau'):
        if getattr(stream, key).shape != (len(stream), n):
            raise DatasetError(f'{key} has shape {getattr(stream, key).shape}, expected '
                               f'({len(stream)}, {n})')
    if stream.qd is not None and stream.qd.shape != (len(stream), n):
        raise DatasetError(f'qd has shape {stream.qd.shape}, expected ({len(stream)}, {n})')
    return stream


def parse_models(models: str | Iterable[str]) -> list[str]:
    """Validate a model list ('lstm,naive' or a sequence); unknown names raise ConfigError."""
    items = [m.strip() for m in models.split(',')] if isinstance(models, str) else \
        [str(m).strip() for m in models]
    items = [m for m in items if m]
    if not items:
        raise ConfigError(f'models: give at least one of {", ".join(MODELS)}')
    unknown = [m for m in items if m not in MODELS]
    if unknown:
        raise ConfigError(f'models: unknown model(s) {", ".join(unknown)}; expected a comma list '
                          f'of {", ".join(MODELS)}')
    return list(dict.fromkeys(items))   # drop duplicates, keep order


# =========================================================================== reference states
@dataclass(frozen=True)
class ReferenceStates:
    """The estimator's output for a stream: one row per sample (NaN where no State came out).

    ``valid`` (N,) bool: a State was emitted; ``labeled``: and it had a torque. ``X`` (N, 3n) the
    newest window row ``[q, qd, qdd]``; ``tau`` (N, n) the filtered (and effort-scaled) torque.
    """

    t: np.ndarray
    X: np.ndarray
    tau: np.ndarray
    valid: np.ndarray
    labeled: np.ndarray
    counters: dict


def reference_states(stream: Stream, filter_config: Any,
                     effort_scale: Sequence[float] | None = None) -> ReferenceStates:
    """Run a :class:`~invdyn_ros.estimation.StreamingEstimator` over the stream like the pipeline.

    ``effort_scale`` multiplies the efforts before they enter the estimator, as the pipeline does
    with its ``effort_scale`` (filtering is linear, so before or after is the same number).
    """
    from invdyn_ros.estimation import StreamingEstimator

    n = stream.n_joints
    N = len(stream)
    est = StreamingEstimator(n, filter_config)
    scale = None if effort_scale is None else np.asarray(effort_scale, dtype=np.float64)
    X = np.full((N, 3 * n), np.nan)
    tau = np.full((N, n), np.nan)
    valid = np.zeros(N, dtype=bool)
    for i in range(N):
        stamp, q, qd, ti = stream.sample(i)
        if ti is not None and scale is not None:
            ti = ti * scale
        state = est.update(stamp, q, qd, ti)
        if state is None:
            continue
        valid[i] = True
        X[i, :n], X[i, n:2 * n], X[i, 2 * n:] = state.q, state.qd, state.qdd
        if state.tau is not None:
            tau[i] = state.tau
    labeled = valid & np.isfinite(tau).all(axis=1) & np.isfinite(X).all(axis=1)
    return ReferenceStates(stream.stamps.copy(), X, tau, valid, labeled, dict(est.counters))


# =========================================================================== results
@dataclass
class ModelResult:
    """One model's scores on the scored part (per-joint lists in joint order) and timings."""

    model: str
    nmse: list[float]
    nmse_mean: float
    mse: list[float]
    train_seconds: float
    predict_seconds: float
    scored_samples: int = 0
    coverage: float = 1.0
    realtime_factor: float | None = None
    details: dict = field(default_factory=dict)


@dataclass
class Series:
    """Arrays for the plots and ``predictions.npz`` (not part of metrics.json).

    ``t``, ``measured`` and ``predictions`` cover the scored samples; ``curves`` maps model ->
    (bin centre times, nMSE mean over joints); ``dual_*`` the dual identifier's choice over the
    whole stream (rows where it published).
    """

    t: np.ndarray
    measured: np.ndarray
    predictions: dict[str, np.ndarray]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    learning_stops_at: float | None = None
    dual_t: np.ndarray | None = None
    dual_active: np.ndarray | None = None
    dual_names: tuple[str, str] = ('lstm', 'gru')


def jsonable(obj: Any) -> Any:
    """Plain JSON types; non-finite floats become None (metrics.json must never hold NaN/Inf)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


@dataclass
class EvalReport:
    """Everything ``invdyn_eval`` reports; :meth:`to_json` is the content of metrics.json."""

    bag: str | None
    topic: str | None
    protocol: str
    train_fraction: float
    joint_names: list[str]
    samples: int
    stream_seconds: float
    wall_seconds: float
    results: list[ModelResult]
    train_samples: int = 0
    test_samples: int = 0
    test_stream_seconds: float = 0.0
    epochs: int | None = None
    gp_samples: int | None = None
    gp_refit_every: int | None = None
    seed: int = 0
    nmse_reference: dict = field(default_factory=dict)
    estimator: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    series: Series | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'series'}
        d['results'] = [dataclasses.asdict(r) for r in self.results]
        return jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def result(self, model: str) -> ModelResult:
        for r in self.results:
            if r.model == model:
                return r
        raise KeyError(model)

    def table(self) -> str:
        """Per-joint nMSE table (joints as rows, models as columns, mean last) plus timings."""
        names = [r.model for r in self.results]
        width = max([10] + [len(n) + 2 for n in names])
        jw = max([6] + [len(j) for j in self.joint_names])
        head = f'{"joint":<{jw}}' + ''.join(f'{n:>{width}}' for n in names)
        lines = [f'nMSE ({self.protocol}, {self.test_samples} scored samples; '
                 f'standardized with the training part\'s torque mean/std)', head,
                 '-' * len(head)]

        def fmt(v: Any) -> str:
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return f'{"-":>{width}}'
            return f'{v:>{width}.4f}' if v == 0 or abs(v) >= 1e-3 else f'{v:>{width}.2e}'

        for j, joint in enumerate(self.joint_names):
            lines.append(f'{joint:<{jw}}' + ''.join(fmt(r.nmse[j]) for r in self.results))
        lines.append('-' * len(head))
        lines.append(f'{"mean":<{jw}}' + ''.join(fmt(r.nmse_mean) for r in self.results))
        lines.append(f'{"train s":<{jw}}' + ''.join(f'{r.train_seconds:>{width}.1f}'
                                                    for r in self.results))
        lines.append(f'{"pred s":<{jw}}' + ''.join(f'{r.predict_seconds:>{width}.2f}'
                                                   for r in self.results))
        lines.append(f'{"x realtime":<{jw}}' + ''.join(
            f'{r.realtime_factor:>{width}.0f}' if r.realtime_factor else f'{"-":>{width}}'
            for r in self.results))
        return '\n'.join(lines)

    def parameters_table(self) -> str:
        """The identified parameters (:meth:`invdyn_ros.physics.PhysicsPrior.report`) of every
        model that identified them (``identified``, and the networks' pipelines with a prior), as
        they are at the end of the run: per joint the body's mass, centre of mass and friction;
        '' when no model identified any (``rnea`` alone keeps the URDF's)."""
        blocks = []
        for r in self.results:
            rep = r.details.get('parameters') if r.model != 'rnea' else None
            if rep is None:
                phys = (r.details.get('pipeline') or {}).get('physics') or {}
                rep = phys.get('parameters') if phys.get('identification') else None
            if not isinstance(rep, dict):
                continue
            jw = max([6] + [len(j) for j in self.joint_names])
            lines = [f'identified parameters ({r.model}; max relative change of an inertial '
                     f'parameter against the URDF: {rep.get("max_relative_change", 0.0):.3g})',
                     f'{"joint":<{jw}}{"mass kg":>10}{"com x,y,z m":>28}{"viscous":>10}'
                     f'{"coulomb":>10}{"offset":>10}']
            for joint in self.joint_names:
                p = rep.get(joint)
                if not isinstance(p, dict):
                    continue
                com = ','.join(f'{c:.3f}' for c in p['com'])
                lines.append(f'{joint:<{jw}}{p["mass"]:>10.3f}{com:>28}{p["viscous"]:>10.3f}'
                             f'{p["coulomb"]:>10.3f}{p["offset"]:>10.3f}')
            blocks.append('\n'.join(lines))
        return '\n\n'.join(blocks)


# =========================================================================== pipeline runs
class _GatedTrainer:
    """Wraps the pipeline's trainer: learning can be switched off, and its time is measured.

    With ``learning = False`` samples are not submitted (the learners' buffers, scalers and
    weights stay as they are) and ``poll`` returns nothing, so the predictors keep the final
    weights: this is how the split protocol's test part is replayed with learning off, without
    touching the pipeline. Everything else is delegated.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.learning = True
        self.seconds = 0.0

    def submit(self, window: Any, tau: Any) -> None:
        if self.learning:
            t0 = time.perf_counter()
            self.inner.submit(window, tau)
            self.seconds += time.perf_counter() - t0

    def poll(self) -> Any:
        if not self.learning:
            return None
        t0 = time.perf_counter()
        try:
            return self.inner.poll()
        finally:
            self.seconds += time.perf_counter() - t0

    def stats(self) -> Any:
        return self.inner.stats()

    def save(self, path_prefix: Any, **options: Any) -> Any:
        return self.inner.save(path_prefix, **options)

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> '_GatedTrainer':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _extra_epochs(trainer: Any, epochs: int, progress: ProgressFn | None, label: str) -> int:
    """``epochs`` passes (in expectation) over every learner's replay buffer; returns the steps.

    Uses the learner's own ``step()`` (same loss, clipping, plateau schedule and divergence guard as
    online). Online, batches mix the FIFO of recent samples with the reservoir at
    ``recent_fraction`` (0.5), which over-weights the newest samples of the training part by
    ``len(buffer) / recent_capacity`` (8x on KUKA-I); for these offline passes the learner's
    ``recent_fraction`` is set to the FIFO's share of the buffer, so batches are uniform over the
    training data, and restored afterwards.
    """
    learners = getattr(trainer, 'learners', None)
    if not learners or epochs <= 0:
        return 0
    total_steps = 0
    plans = []
    for name, learner in learners.items():
        size = len(learner.buffer)
        if size < max(1, learner.config.batch_size // 2):
            continue
        steps = int(epochs * math.ceil(size / learner.config.batch_size))
        plans.append((name, learner, steps))
        total_steps += steps
    done = 0
    for name, learner, steps in plans:
        saved = learner.config
        recent = getattr(learner.buffer, 'recent_size', None)
        if recent is not None and len(learner.buffer):
            share = float(recent) / float(len(learner.buffer))
            try:
                learner.config = dataclasses.replace(saved, recent_fraction=share)
            except (TypeError, ValueError):
                pass
        try:
            for k in range(steps):
                learner.step()
                done += 1
                if progress is not None and done % 50 == 0:
                    progress(f'{label}: epochs', done, total_steps)
        finally:
            learner.config = saved
    if progress is not None:
        progress(f'{label}: epochs', total_steps, total_steps)
    return total_steps


def _pipeline_params(base: Mapping[str, Any], model: str, joint_names: Sequence[str],
                     seed: int) -> dict[str, Any]:
    params = dict(base)
    params['joint_names'] = list(joint_names)
    params['seed'] = int(seed)
    has_urdf = bool(params.get('robot_description') or params.get('urdf_path'))
    if model == 'dual':
        params['dual_enabled'] = True
        if has_urdf and params.get('prior', 'none') == 'none':
            params['prior'] = 'rnea'
    elif model in RESIDUAL_MODELS:
        params['model'] = model[len('residual_'):]
        params['dual_enabled'] = False
        params['prior'] = 'rnea'
    else:                                   # a black-box network: no prior
        params['model'] = model
        params['dual_enabled'] = False
        params['prior'] = 'none'
    return params


def _build_pipeline(params: Mapping[str, Any]) -> tuple[Any, Any, _GatedTrainer]:
    from invdyn_ros.pipeline import Pipeline, PipelineConfig, make_trainer

    config = PipelineConfig.from_params(dict(params))
    config.validate()
    inner = make_trainer(config, kind='inline')
    gated = _GatedTrainer(inner)
    return config, Pipeline(config, gated), gated


def _run_network(model: str, stream: Stream, params: Mapping[str, Any], protocol: str,
                 n_train: int, epochs: int, seed: int, progress: ProgressFn | None) -> dict:
    """Stream the samples through one Pipeline; collect the published torque per sample."""
    import torch

    # the predictors' initial (pre-training) weights come from torch's global RNG: seed it for
    # reproducible prequential outputs, without disturbing the caller's RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _run_network_seeded(model, stream, params, protocol, n_train, epochs, seed,
                                   progress)


def _run_network_seeded(model: str, stream: Stream, params: Mapping[str, Any], protocol: str,
                        n_train: int, epochs: int, seed: int, progress: ProgressFn | None
                        ) -> dict:
    N, n = len(stream), stream.n_joints
    config, pipe, trainer = _build_pipeline(_pipeline_params(params, model, stream.joint_names,
                                                             seed))
    torque = np.full((N, n), np.nan)
    labels = np.full((N, n), np.nan)       # Output.tau: the label the pipeline itself used
    nets: dict[str, np.ndarray] = {}
    active = np.full((N, n), -1, dtype=np.int64)
    ready = np.zeros(N, dtype=bool)
    steps = 0
    t_phase = [0.0, 0.0]   # [learning phase wall time, scored-phase wall time]
    try:
        phases = [(0, n_train, True), (n_train, N, False)] if protocol == 'split' \
            else [(0, N, True)]
        for start, stop, learning in phases:
            label = f'{model}: {"train" if learning else "test"}' if protocol == 'split' \
                else f'{model}: prequential'
            trainer.learning = learning
            t0 = time.perf_counter()
            if learning:
                outputs = _stream_outputs(pipe, stream, start, stop, label, progress)
            else:   # inference only: the pipeline's batched replay, same outputs, much faster
                if progress is not None:
                    progress(label, 0, stop - start)
                batch = pipe.process_arrays(*stream.columns(start, stop))
                ok = np.flatnonzero(batch.valid)
                rows = start + ok
                torque[rows] = batch.torque[ok]
                with_tau = ok[batch.has_tau[ok]]
                labels[start + with_tau] = batch.tau[with_tau]
                for name, p in batch.predictions.items():
                    got = ok[np.isfinite(p[ok]).all(axis=1)]
                    nets.setdefault(name, np.full((N, n), np.nan))[start + got] = p[got]
                active[rows] = batch.active[ok]
                ready[rows] = batch.ready[ok]
                outputs = ()
            for i, out in outputs:
                if out is not None:       # Output: torque finite and clamped (pipeline contract)
                    torque[i] = out.torque
                    if out.tau is not None:
                        labels[i] = out.tau
                    for name, p in out.predictions.items():
                        if p is not None:
                            nets.setdefault(name, np.full((N, n), np.nan))[i] = p
                    active[i] = out.active
                    ready[i] = out.ready
            if progress is not None:
                progress(label, stop - start, stop - start)
            if protocol == 'split' and learning:
                steps = _extra_epochs(trainer.inner, epochs, progress, model)
                pipe.refresh_weights()    # the test part starts with the final weights
                t_phase[0] = time.perf_counter() - t0
            else:
                t_phase[1] = time.perf_counter() - t0
        stats = {}
        try:
            stats = jsonable(trainer.stats())
        except Exception:  # noqa: BLE001 - stats are informational only
            pass
        counters = {}
        try:
            counters = {k: v for k, v in pipe.stats().items() if k != 'learners'}
        except Exception:  # noqa: BLE001 - stats are informational only
            counters = {'pipeline': dict(pipe.counters)}
        counters = jsonable(counters)
    finally:
        try:
            pipe.close()
        except Exception:  # noqa: BLE001 - closing must not hide the real error
            pass
    if protocol == 'split':
        train_s, predict_s = t_phase
    else:
        train_s = trainer.seconds
        predict_s = max(t_phase[1] - trainer.seconds, 0.0)
    names = config.network_names
    return {'torque': torque, 'networks': nets, 'active': active if model == 'dual' else None,
            'ready': ready, 'train_seconds': train_s, 'predict_seconds': predict_s,
            'extra_steps': steps, 'learner_stats': stats, 'pipeline_stats': counters,
            'dual_names': tuple(str(x) for x in names) if model == 'dual' else None,
            'labels': labels}


def _stream_outputs(pipe: Any, stream: Stream, start: int, stop: int, label: str,
                    progress: ProgressFn | None) -> Iterable[tuple[int, Any]]:
    """``(i, pipe.process(sample i))`` for ``start <= i < stop``, lazily (learning on: every
    sample must reach the trainer before the next is predicted), with progress reports."""
    for i in range(start, stop):
        yield i, pipe.process(*stream.sample(i))
        if progress is not None and (i - start) % _PROGRESS_EVERY == 0:
            progress(label, i - start, stop - start)


def _pipeline_filter(params: Mapping[str, Any], joint_names: Sequence[str], seed: int
                     ) -> tuple[Any, Any]:
    """The FilterConfig and effort_scale the pipeline would use for these parameters."""
    from invdyn_ros.pipeline import PipelineConfig

    config = PipelineConfig.from_params(_pipeline_params(params, 'dual', joint_names, seed))
    return config.filter, config.effort_scale


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
    filter_cfg, effort_scale = _pipeline_filter(params, stream.joint_names, seed)
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
            pred, tr_s, pr_s, det = _run_baseline(model, ref, protocol, train_mask, gp_samples,
                                                  gp_refit_every, seed, progress)
        elif model in PHYSICS_MODELS:
            pred, tr_s, pr_s, det = _run_physics(model, ref, protocol, train_mask, params,
                                                 stream.joint_names, seed)
        else:
            run = _run_network(model, stream, params, protocol, n_train, epochs, seed, progress)
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


def _run_physics(model: str, ref: ReferenceStates, protocol: str, train_mask: np.ndarray,
                 params: Mapping[str, Any], joint_names: Sequence[str], seed: int
                 ) -> tuple[np.ndarray, float, float, dict]:
    """rnea / identified on the estimator's states: the pipeline's own physics stage
    (``residual.PhysicsStage``); ``identified`` learns on the training part (split) or on every
    sample after predicting it (prequential), like the pipeline."""
    from invdyn_ros.pipeline import PipelineConfig
    from invdyn_ros.residual import PhysicsStage

    config = PipelineConfig.from_params(_pipeline_params(params, 'residual_lstm', joint_names,
                                                         seed))
    phys = dataclasses.replace(config.physics, identify=model == 'identified')
    stage = PhysicsStage(phys, config.joint_names, seed=seed)
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
            stage.learn(q[i], qd[i], qdd[i], ref.tau[i])
    t1 = time.perf_counter()
    if protocol == 'split':
        test = ref.valid & ~train_mask
        pred[test] = stage.prior.predict_many(q[test], qd[test], qdd[test])
    t2 = time.perf_counter()
    det = {'parameters': stage.prior.report()}
    if stage.identification is not None:
        det['identification'] = dict(stage.identification.counters)
    return pred, t1 - t0, t2 - t1, det


def _run_baseline(model: str, ref: ReferenceStates, protocol: str, train_mask: np.ndarray,
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

