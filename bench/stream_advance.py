#!/usr/bin/env python3
"""What the control thread spends per sample after ``publish()``: the recurrent chains' advance
and the whole ``Pipeline.finish()``.

A streaming LSTM / GRU predictor keeps L chains (one per window offset) and advances all of them
by every row (``Predictor.complete()`` in ``Pipeline.finish``, after the node has published). This
script times, for 7 joints and the node's bench networks (64 x 2, window 10):

1. the advance of the L chains through both layers, per network kind, as ``Predictor`` does it
   now (``_advance_chains``: (L, H) numpy products into preallocated arrays) and as it did before
   (``torch.lstm_cell`` / ``torch.gru_cell`` per layer, reimplemented here as the reference), in a
   warm loop, with the largest difference of the chains' states between the two;
2. ``Pipeline.predict_reference`` with the demo's node parameters (``config/ur5.yaml`` +
   ``config/demo.yaml``, the +-25 % UR5 URDF, residual LSTM + GRU 32 x 2, window 5) on the demo's
   reference: what ``~/reference`` -> ``~/feedforward`` computes before publishing (both
   networks' read-out and advance, the prior, the selection), in a warm loop;
3. ``Pipeline.finish()`` of the node's setup (prior rnea with the Panda URDF, residual LSTM +
   black-box GRU, a process trainer learning meanwhile), paced at 1 kHz like a driver, per sample
   p50 / mean over ``--samples`` samples after a warm-up (``--finish-samples 0`` skips it).

The node's capacity at 1 kHz is what this is about: ``process`` (the fast path) plus ``finish``
plus message handling must stay well under 1 ms per sample, or joint states are missed
(``bench/latency.py``'s ``lost`` and the node's ``missed_by_stamp_gap``).

Usage::

    .venv/bin/python bench/stream_advance.py [--samples 5000] [--finish-samples 10000] [--save NAME]
    # the demo's networks:
    .venv/bin/python bench/stream_advance.py --hidden 32 --window 5 --finish-samples 0
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import Recorder, format_machine, format_table, machine_info, save_results  # noqa: E402
from bench.fast_path import NET, N_JOINTS, RATE_HZ, panda_urdf, stream  # noqa: E402
from invdyn_ros.learning.learner import LearnerConfig  # noqa: E402
from invdyn_ros.learning.predictor import Predictor  # noqa: E402

WINDOW = 10


def make_predictor(kind: str, hidden: int, window: int) -> Predictor:
    torch.manual_seed(0)
    return Predictor(kind, N_JOINTS, {**NET, 'hidden_size': hidden}, window)


class TorchCells:
    """The former advance: ``torch.lstm_cell`` / ``gru_cell`` over the (L, H) states, chain c
    restarting from zero (what ``Predictor._advance`` did before it ran in numpy)."""

    def __init__(self, p: Predictor) -> None:
        rnn = p.model.rnn
        self.lstm = p.kind == 'lstm'
        self.w = [tuple(getattr(rnn, f'{n}_l{k}').detach() for n in
                        ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))
                  for k in range(rnn.num_layers)]
        L, H = p.window, rnn.hidden_size
        self.h = [torch.zeros(L, H) for _ in self.w]
        self.c = [torch.zeros(L, H) for _ in self.w]
        self.L = L

    def advance(self, xs: np.ndarray, c: int) -> None:
        inp = torch.from_numpy(xs).view(1, -1).expand(self.L, xs.shape[0])
        for layer, w in enumerate(self.w):
            self.h[layer][c] = 0.0
            if self.lstm:
                self.c[layer][c] = 0.0
                h, cc = torch.lstm_cell(inp, (self.h[layer], self.c[layer]), *w)
                self.c[layer] = cc
            else:
                h = torch.gru_cell(inp, self.h[layer], *w)
            self.h[layer] = h
            inp = h


def time_advance(kind: str, n: int, hidden: int, window: int) -> dict:
    p = make_predictor(kind, hidden, window)
    ref = TorchCells(p)
    rows = np.random.default_rng(0).normal(size=(n + 500, p.input_features)).astype(np.float32)
    clock = time.perf_counter
    t_np, t_torch = np.empty(n), np.empty(n)
    worst = 0.0
    for k, xs in enumerate(rows):
        c = k % p.window
        t0 = clock()
        p._advance_chains(xs, c)
        t1 = clock()
        ref.advance(xs, c)
        t2 = clock()
        if k >= 500:
            t_np[k - 500], t_torch[k - 500] = t1 - t0, t2 - t1
    for layer in range(len(ref.w)):
        worst = max(worst, float(np.abs(p._hn[layer] - ref.h[layer].numpy()).max()))
    return {'numpy': t_np * 1e6, 'torch': t_torch * 1e6, 'max_state_difference': worst}


def time_reference(n: int) -> np.ndarray:
    from bench.reference_feedforward import pipeline_config, reference
    from invdyn_ros.pipeline.pipeline import Pipeline, make_trainer
    from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
    arm = SimulatedArm(ArmConfig(robot='ur5', seed=0))
    traj = reference(arm)
    clock = time.perf_counter
    cfg = pipeline_config(arm, {})
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    times = np.empty(n)
    for k in range(n + 500):
        q, qd, qdd = traj(0.002 * k)
        t0 = clock()
        pipe.predict_reference(q, qd, qdd, stamp=0.002 * k)
        if k >= 500:
            times[k - 500] = clock() - t0
    pipe.close()
    return times * 1e6


def time_finish(n: int, warm: int) -> np.ndarray:
    from invdyn_ros.learning.training import make_trainer
    from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
    from invdyn_ros.stages.estimation import FilterConfig
    from invdyn_ros.stages.physics import PhysicsConfig
    learner = LearnerConfig(model='lstm', model_options=dict(NET), window=WINDOW, min_samples=500)
    names = tuple(f'panda_joint{i + 1}' for i in range(N_JOINTS))
    cfg = PipelineConfig(joint_names=names, filter=FilterConfig(rate_hz=RATE_HZ), learner=learner,
                         second_model='gru', second_model_options=dict(NET),
                         physics=PhysicsConfig(prior='rnea', urdf=panda_urdf()))
    trainer = make_trainer(cfg, 'process', publish_period_s=1.0, max_updates_per_sample=0.2)
    try:
        pipe = Pipeline(cfg, trainer)
        t, q, qd, tau = stream(n + warm)
        clock = time.perf_counter
        out = np.empty(n)
        for k in range(n + warm):
            a = clock()
            pipe.process(t[k], q[k], qd[k], tau[k], defer=True)
            b = clock()
            pipe.finish()
            c = clock()
            if k >= warm:
                out[k - warm] = c - b
            time.sleep(max(0.0, 0.001 - (clock() - a)))      # a 1 kHz driver
        return out * 1e6
    finally:
        trainer.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--samples', type=int, default=5000,
                    help='timed advances per network kind (0: skip)')
    ap.add_argument('--hidden', type=int, default=NET['hidden_size'],
                    help='hidden size of the timed advances (the demo: 32)')
    ap.add_argument('--window', type=int, default=WINDOW,
                    help='window L of the timed advances (the demo: 5)')
    ap.add_argument('--finish-samples', type=int, default=10000,
                    help='timed Pipeline.finish() calls (after 5000 untimed; 0: skip)')
    ap.add_argument('--save', default='', help='save the report as bench/results/<SAVE>.txt/json')
    args = ap.parse_args(argv)
    torch.set_num_threads(1)          # as invdyn_node does (node_main)
    out = Recorder()
    info = machine_info()
    out(format_machine(info))
    rows, data = [], {}
    for kind in ('lstm', 'gru') if args.samples > 0 else ():
        r = time_advance(kind, args.samples, args.hidden, args.window)
        rows.append([f'{kind} {args.hidden} x 2: advance {args.window} chains',
                     float(np.median(r['numpy'])), float(np.median(r['torch'])),
                     float(np.percentile(r['numpy'], 99)), float(np.percentile(r['torch'], 99)),
                     r['max_state_difference']])
        data[kind] = dict(zip(['numpy_p50_us', 'torch_p50_us', 'numpy_p99_us', 'torch_p99_us',
                               'max_state_difference'], rows[-1][1:]))
    if rows:
        out(f'{args.samples} timed advances per kind after 500 untimed, warm loop; 7 joints, '
            f'hidden {args.hidden} x 2, window {args.window}')
        out(format_table(['piece', 'numpy p50 us', 'torch cells p50 us', 'numpy p99 us',
                          'torch cells p99 us', 'max |state diff|'], rows, floatfmt='.3g'))
    if args.samples > 0:
        r = time_reference(args.samples)
        data['predict_reference'] = {'p50_us': float(np.median(r)),
                                     'p99_us': float(np.percentile(r, 99))}
        out('Pipeline.predict_reference, the demo node (UR5 prior, residual LSTM + GRU 32 x 2, '
            f'window 5): p50 {np.median(r):.0f} us, p99 {np.percentile(r, 99):.0f} us')
    if args.finish_samples > 0:
        f = time_finish(args.finish_samples, 5000)
        data['finish'] = {'p50_us': float(np.median(f)), 'mean_us': float(np.mean(f)),
                          'p99_us': float(np.percentile(f, 99))}
        out(f'Pipeline.finish() (prior rnea, Panda URDF, residual LSTM + GRU, process trainer '
            f'learning, paced at 1 kHz): p50 {np.median(f):.0f} us, mean {np.mean(f):.0f} us, '
            f'p99 {np.percentile(f, 99):.0f} us over {len(f)} samples')
    if args.save:
        for p in save_results(args.save, '\n'.join(out.lines), {'machine': info, 'results': data}):
            out(f'saved {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
