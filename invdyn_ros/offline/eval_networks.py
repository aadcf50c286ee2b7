"""The evaluator's network runs: one model's samples streamed through the node's own Pipeline.

:func:`run_network` builds the model's :class:`~invdyn_ros.pipeline.pipeline.Pipeline` with an
inline trainer behind a :class:`GatedTrainer` (learning can be switched off, its time is measured),
streams the training part (split) or everything (prequential) per sample, runs
:func:`extra_epochs` over the replay buffers (split), and replays the test part with learning off
through ``Pipeline.process_arrays``. ROS-free.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterable, Mapping

import numpy as np

from invdyn_ros.offline.eval_models import ProgressFn, pipeline_params
from invdyn_ros.offline.eval_report import jsonable
from invdyn_ros.offline.eval_stream import Stream

__all__ = ['GatedTrainer', 'extra_epochs', 'build_pipeline', 'run_network']

#: How often (in samples) the progress callback is called during a stream.
_PROGRESS_EVERY = 200


class GatedTrainer:
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

    def __enter__(self) -> 'GatedTrainer':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def extra_epochs(trainer: Any, epochs: int, progress: ProgressFn | None, label: str) -> int:
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


def build_pipeline(params: Mapping[str, Any]) -> tuple[Any, Any, GatedTrainer]:
    from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer

    config = PipelineConfig.from_params(dict(params))
    config.validate()
    inner = make_trainer(config, kind='inline')
    gated = GatedTrainer(inner)
    return config, Pipeline(config, gated), gated


def run_network(model: str, stream: Stream, params: Mapping[str, Any], protocol: str,
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
    config, pipe, trainer = build_pipeline(pipeline_params(params, model, stream.joint_names,
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
                steps = extra_epochs(trainer.inner, epochs, progress, model)
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
