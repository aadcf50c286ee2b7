#!/usr/bin/env python3
"""Why the physics prior costs more inside the control loop than in a loop of its own.

Times Pinocchio's RNEA (the prior's model, the Panda URDF of ``bench/fast_path.py``) right after
different other work, 3000 calls each (p50 of the last 2500): nothing, a numpy matmul, a torch
LSTM forward (the networks' work on the fast path) with 2 and with 1 torch thread, and a second
RNEA right after the LSTM. If the RNEA after the LSTM is slow but a second one right after it is
fast, the cost is the state (caches, branch predictors) the network leaves behind, not the RNEA.

Usage::

    .venv/bin/python bench/prior_cold_cache.py [--calls 3000] [--save NAME]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import Recorder, format_machine, machine_info, save_results  # noqa: E402
from bench.fast_path import make_pipeline  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--calls', type=int, default=3000, help='timed RNEA calls per case')
    ap.add_argument('--save', default='', help='save the report as bench/results/<SAVE>.txt/json')
    args = ap.parse_args(argv)
    out = Recorder()
    out(format_machine(machine_info()))
    prior = make_pipeline(prior=True).physics.prior
    rnea, model, data = prior._rnea, prior._model, prior._data
    rng = np.random.default_rng(0)
    q, qd, qdd = (rng.uniform(-1, 1, prior.robot.n) for _ in range(3))
    lstm = torch.nn.LSTM(21, 64, 2, batch_first=True)
    x = torch.randn(1, 10, 21)
    a = rng.normal(size=(64, 64))
    clock = time.perf_counter
    skip = min(500, args.calls // 5)

    def case(before, between=lambda: None) -> float:
        times = np.empty(args.calls)
        for i in range(args.calls):
            before()
            between()
            t0 = clock()
            rnea(model, data, q, qd, qdd)
            times[i] = clock() - t0
        return float(np.median(times[skip:]) * 1e6)

    results = {}
    with torch.no_grad():
        results['nothing before'] = case(lambda: None)
        results['numpy 64x64 matmul before'] = case(lambda: a @ a)
        torch.set_num_threads(2)
        results['torch LSTM forward before (2 threads)'] = case(lambda: lstm(x))
        torch.set_num_threads(1)
        results['torch LSTM forward before (1 thread, as the node)'] = case(lambda: lstm(x))
        results['torch LSTM forward, one RNEA, then the timed RNEA (1 thread)'] = case(
            lambda: lstm(x), lambda: rnea(model, data, q, qd, qdd))
    out(f'Pinocchio RNEA, {prior.robot.n} joints (Panda), p50 of {args.calls - skip} calls:')
    for name, us in results.items():
        out(f'  {name:<62s} {us:6.1f} us')
    if args.save:
        for path in save_results(args.save, out.text, {'rnea_p50_us': results}):
            print(f'saved {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
