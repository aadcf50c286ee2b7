#!/usr/bin/env python3
"""Per-sample cost of the node's fast path, compiled (numba) kernels vs the numpy path, in one process.

What the node does between a ``/joint_states`` message and the ``publish()`` of
``~/predicted_effort`` (besides message handling and DDS) is ``Pipeline.process(..., defer=True)``:
the estimator's ``update`` and the read-out of the networks in use (``Predictor.push(defer=True)``).
This script times those pieces in a warm loop, for 7 joints at 1 kHz with the node's bench setup
(dual LSTM + GRU, 64 x 2, window 10), once with the compiled kernels of ``invdyn_ros/stages/kernels.py``
and once with the numpy path (the same objects with their kernels set to ``None``, which is what
runs without numba). Both paths give the same results (asserted here: the estimator bit for bit,
the predictions to 1e-5).

With ``prior: rnea`` (Panda URDF) the whole ``process`` is timed too, but the two pipelines'
identifiers run one or two networks on different samples, so the prior's cost is read from the
rows at the same number of networks in use and from its own pieces (``prior share``: the physics
stage's ``begin`` + ``combine``, timed where ``process`` calls them; their two timers add a few
µs of their own there). The prior's RNEA is a compiled kernel too (``kernels.rnea_prior``); the
numpy column runs Pinocchio's ``rnea`` instead.

Warm-loop numbers are a lower bound: in the node the fast path runs right after the thread wakes,
with colder caches (see ``bench/latency.py`` for the end-to-end numbers). No learning runs here:
the trainer never reaches its ``min_samples``, so ``finish()`` (untimed) only does the bookkeeping.

Usage::

    python bench/fast_path.py [--samples 20000] [--save fast_path]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402

from bench.common import (Recorder, format_machine, format_table, machine_info,  # noqa: E402
                          panda_urdf_path, save_results)
from invdyn_ros.learning.learner import LearnerConfig  # noqa: E402
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer  # noqa: E402
from invdyn_ros.stages import kernels  # noqa: E402
from invdyn_ros.stages.estimation import FilterConfig, StreamingEstimator  # noqa: E402

N_JOINTS = 7
RATE_HZ = 1000.0
NET = {'hidden_size': 64, 'num_layers': 2}


def stream(n_samples: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Smooth joint motion with encoder-like noise, jittered 1 kHz stamps, torques."""
    rng = np.random.default_rng(seed)
    t = 1.0 + np.arange(n_samples) / RATE_HZ + rng.normal(scale=2e-5, size=n_samples)
    phase = rng.uniform(0, 2 * np.pi, N_JOINTS)
    freq = rng.uniform(0.2, 1.0, N_JOINTS)
    q = np.sin(2 * np.pi * freq * t[:, None] + phase) + rng.normal(scale=1e-4, size=(n_samples, N_JOINTS))
    qd = 2 * np.pi * freq * np.cos(2 * np.pi * freq * t[:, None] + phase)
    tau = 10.0 * q + 2.0 * qd
    return t, q, qd, tau


def panda_urdf() -> str:
    return panda_urdf_path().read_text()


def make_pipeline(prior: bool = False) -> Pipeline:
    """The bench pipeline; ``prior``: with the physics prior (Panda URDF, 7 joints; the
    residual LSTM + black-box GRU), whose fast-path share is the prior's RNEA and the
    visited-region distance."""
    from invdyn_ros.stages.physics import PhysicsConfig
    learner = LearnerConfig(model='lstm', model_options=dict(NET), window=10,
                            min_samples=10 ** 9, buffer_capacity=1000, recent_capacity=100)
    names = tuple(f'panda_joint{i + 1}' for i in range(N_JOINTS))
    physics = PhysicsConfig(prior='rnea', urdf=panda_urdf()) if prior else PhysicsConfig()
    cfg = PipelineConfig(joint_names=names,
                         filter=FilterConfig(rate_hz=RATE_HZ), learner=learner,
                         second_model='gru', second_model_options=dict(NET), physics=physics)
    return Pipeline(cfg, make_trainer(cfg, 'inline'))


def use_numpy(pipeline: Pipeline) -> None:
    """What runs without numba: every kernel of this pipeline off."""
    est = pipeline.estimator
    est._in_range = est._filter_step = None
    for p in pipeline.predictors.values():
        p._kernel = None
    if pipeline.physics is not None:
        pipeline.physics.prior._kernel = None           # Pinocchio's RNEA


def time_estimator(est: StreamingEstimator, data: tuple[np.ndarray, ...]) -> np.ndarray:
    t, q, qd, tau = data
    update, clock = est.update, time.perf_counter
    out = np.empty(len(t))
    for k in range(len(t)):
        t0 = clock()
        update(t[k], q[k], qd[k], tau[k])
        out[k] = clock() - t0
    return out


def time_pipeline(pipe: Pipeline, data: tuple[np.ndarray, ...]
                  ) -> tuple[np.ndarray, list, np.ndarray]:
    """Per-sample time of ``process(defer=True)``, the torques, and how many networks the
    fast path ran for each sample (the identifier's ``needed``: 1 or 2)."""
    t, q, qd, tau = data
    process, finish, clock = pipe.process, pipe.finish, time.perf_counter
    out = np.empty(len(t))
    needed = np.zeros(len(t), dtype=int)
    torques = []
    for k in range(len(t)):
        needed[k] = len(pipe.identifier.needed)
        t0 = clock()
        res = process(t[k], q[k], qd[k], tau[k], defer=True)
        out[k] = clock() - t0
        finish()                          # the bookkeeping the node does after publish(), untimed
        torques.append(None if res is None else res.torque.copy())
    return out, torques, needed


def time_prior_share(pipe: Pipeline, data: tuple[np.ndarray, ...]) -> np.ndarray:
    """Per-sample time of what the prior adds inside ``process``: the physics stage's ``begin``
    (the RNEA, the friction terms, the finiteness check, the trust every ``stride``-th sample)
    plus its ``combine`` of the residual network's output, each timed where ``process`` calls it
    (so with the caches as the estimator and the networks leave them, not in a warm loop of its
    own). The timers are wrappers on the stage instance; they add ~0.1 us each."""
    t, q, qd, tau = data
    phys, clock = pipe.physics, time.perf_counter
    begin, combine = phys.begin, phys.combine
    spent = [0.0]

    def timed_begin(*args):
        t0 = clock()
        r = begin(*args)
        spent[0] += clock() - t0
        return r

    def timed_combine(*args):
        t0 = clock()
        r = combine(*args)
        spent[0] += clock() - t0
        return r

    phys.begin, phys.combine = timed_begin, timed_combine
    out = []
    try:
        for k in range(len(t)):
            spent[0] = 0.0
            if pipe.process(t[k], q[k], qd[k], tau[k], defer=True) is not None:
                out.append(spent[0])
            pipe.finish()
    finally:
        del phys.begin, phys.combine
    return np.array(out)


def time_readout(pipe: Pipeline, rows: np.ndarray) -> dict[str, np.ndarray]:
    res = {}
    clock = time.perf_counter
    for name, p in pipe.predictors.items():
        p.reset_stream()
        out = np.empty(len(rows))
        for k, row in enumerate(rows):
            t0 = clock()
            p.push(row, defer=True)
            out[k] = clock() - t0
            p.complete()
        res[name] = out
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--samples', type=int, default=20000, help='samples per timed loop')
    ap.add_argument('--save', default='', help='save the report as bench/results/<SAVE>.txt/json')
    args = ap.parse_args(argv)
    if not kernels.AVAILABLE:
        sys.exit('numba is not available (or INVDYN_DISABLE_NUMBA is set): nothing to compare')
    import torch
    torch.set_num_threads(1)      # as invdyn_node does (node_main): no torch thread pool spinning
    out = Recorder()
    out(format_machine(machine_info()))
    skip = 1000                                  # filter start, the networks' first windows
    data = stream(args.samples + skip)
    rows = np.random.default_rng(1).normal(size=(args.samples, 3 * N_JOINTS))
    results: dict[str, dict[str, np.ndarray]] = {}
    outputs = {}
    for path in ('compiled', 'numpy'):
        est = StreamingEstimator(N_JOINTS, FilterConfig(rate_hz=RATE_HZ))
        pipe = make_pipeline()
        if path == 'numpy':
            est._in_range = est._filter_step = None
            use_numpy(pipe)
        r = {'estimator update': time_estimator(est, data)[skip:]}
        proc, torques, needed = time_pipeline(pipe, data)
        r['Pipeline.process(defer=True)'] = proc[skip:]
        pipe_prior = make_pipeline(prior=True)
        if path == 'numpy':
            use_numpy(pipe_prior)
        proc_prior, _, needed_prior = time_pipeline(pipe_prior, data)
        r['Pipeline.process(defer=True), prior rnea'] = proc_prior[skip:]
        # the two pipelines' identifiers run one or two networks on different samples: compare
        # them at the same number of networks, and time the prior's own pieces
        for k in (1, 2):
            a, b = proc[skip:][needed[skip:] == k], proc_prior[skip:][needed_prior[skip:] == k]
            if len(a) >= 100 and len(b) >= 100:
                r[f'process, {k} network(s) in use'] = a
                r[f'process, {k} network(s) in use, prior rnea'] = b
        pipe_share = make_pipeline(prior=True)
        if path == 'numpy':
            use_numpy(pipe_share)
        r['prior share: begin + combine'] = time_prior_share(pipe_share, data)[skip:]
        for name, v in time_readout(pipe, rows).items():
            r[f'{name} push(defer=True)'] = v[skip:]
        results[path] = r
        outputs[path] = torques
    pairs = [(a, b) for a, b in zip(outputs['compiled'], outputs['numpy'])]
    assert all((a is None) == (b is None) for a, b in pairs)
    both = [(a, b) for a, b in pairs if a is not None]
    worst = max(float(np.max(np.abs(a - b))) for a, b in both)
    assert worst <= 1e-5 * max(1.0, max(float(np.max(np.abs(b))) for _, b in both)), worst
    header = ['piece (7 joints, 64 x 2, window 10)', 'compiled p50 us', 'numpy p50 us',
              'compiled p99 us', 'numpy p99 us', 'saved p50 us']
    table, data_out = [], {}
    for piece in results['compiled']:
        if piece not in results['numpy']:      # a network count one path never had 100 times
            continue
        c, n = results['compiled'][piece] * 1e6, results['numpy'][piece] * 1e6
        row = [piece, float(np.median(c)), float(np.median(n)), float(np.percentile(c, 99)),
               float(np.percentile(n, 99)), float(np.median(n) - np.median(c))]
        table.append(row)
        data_out[piece] = dict(zip(header[1:], row[1:]))
    out(f'{args.samples} timed samples per loop after {skip} untimed; warm loop, no training; '
        f'torque outputs of the two paths differ by at most {worst:.2e} N m')
    out(format_table(header, table, floatfmt='.1f'))
    if args.save:
        for p in save_results(args.save, '\n'.join(out.lines),
                              {'machine': machine_info(), 'samples': args.samples,
                               'max_torque_difference': worst, 'pieces': data_out}):
            print(f'saved {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
