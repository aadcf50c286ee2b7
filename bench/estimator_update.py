#!/usr/bin/env python3
"""Per-sample cost of ``StreamingEstimator.update`` alone: configured vs measured (monitored) rate,
compiled kernels vs the numpy path; 7 joints, 1 kHz jittered stamps, warm loop.

``bench/fast_path.py`` times the whole fast path with a configured rate; the rate monitor
(``rate_hz: 0``) only runs with a measured rate, so this script times both. ``--root DIR`` imports
``invdyn_ros`` from another checkout (e.g. ``git archive <commit> invdyn_ros | tar -x -C DIR``)
to compare before / after a change.

Usage::

    .venv/bin/python bench/estimator_update.py [--samples 20000] [--root DIR]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--samples', type=int, default=20000)
    ap.add_argument('--root', default=str(Path(__file__).resolve().parents[1]))
    args = ap.parse_args(argv)
    sys.path.insert(0, args.root)
    import numpy as np

    import invdyn_ros.stages.estimation as estimation
    from invdyn_ros.stages.estimation import FilterConfig, StreamingEstimator

    print(f'invdyn_ros from {Path(estimation.__file__).parent}')
    N, n, rate = args.samples + 1000, 7, 1000.0
    rng = np.random.default_rng(0)
    t = 1.0 + np.arange(N) / rate + rng.normal(scale=2e-5, size=N)
    q = np.sin(t[:, None] + np.arange(n))
    qd = np.cos(t[:, None] + np.arange(n))
    tau = 10.0 * q
    for configured in (rate, None):
        for path in ('compiled', 'numpy'):
            est = StreamingEstimator(n, FilterConfig(rate_hz=configured))
            if path == 'numpy':
                est._in_range = est._filter_step = None
            update, clock = est.update, time.perf_counter
            out = np.empty(N)
            for k in range(N):
                t0 = clock()
                update(t[k], q[k], qd[k], tau[k])
                out[k] = clock() - t0
            us = out[1000:] * 1e6
            label = 'configured' if configured else 'measured'
            print(f'rate {label:10s} {path:8s} p50 {np.median(us):6.2f} us  '
                  f'p99 {np.percentile(us, 99):6.2f} us  max {us.max():8.1f} us')
    return 0


if __name__ == '__main__':
    sys.exit(main())
