#!/usr/bin/env python3
"""How long ``~/save_checkpoint`` takes to answer while a 1 kHz stream keeps the trainer busy,
on a quiet machine and with two busy loops hogging both cores.

It starts ``python -m invdyn_ros.ros.node`` (the process trainer, the small LSTM + GRU of
``test/test_faults.py``, a checkpoint path) in its own ROS domain, publishes 3-joint JointStates
at ``--rate`` Hz from a thread for ``--warmup`` s, then calls the service ``--calls`` times while
the stream goes on, and prints each call's answer time and ``success``. The trainer runs at
nice 10 and learns the samples queued before a save first, within
``training.SAVE_LEARN_BUDGET_S`` (the rest is learned after the save, never lost).

Usage::

    .venv/bin/python bench/save_under_hog.py [--calls 3] [--rate 1000] [--warmup 5] [--big]

``--big``: 7 joints and the node's default networks (LSTM + GRU 64 x 2, window 10, batch 128)
instead of the small test networks.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / 'test'), str(REPO)]

import numpy as np  # noqa: E402
from test_faults import _call, cpu_hogs, end, launch, wait_up  # noqa: E402
from test_node import Harness, stop_node  # noqa: E402

import conftest  # noqa: E402,F401  (isolated ROS environment: own domain, localhost)
from common import format_machine, machine_info, save_results  # noqa: E402

BIG = {'hidden_size': 64, 'num_layers': 2, 'window': 10, 'batch_size': 128, 'min_samples': 256,
       'buffer_capacity': 20000, 'recent_capacity': 2000}


def stream(h: Harness, joints: list[str], rate: float, stop: threading.Event) -> None:
    i = 0
    k = np.arange(1, len(joints) + 1)
    t0 = time.perf_counter()
    while not stop.is_set():
        s = 100.0 + i / rate
        h.send(s, joints, np.sin(k * s), k * np.cos(k * s), np.sin(k * s + 1.0))
        i += 1
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


def one(hog: bool, calls: int, rate: float, warmup: float, big: bool
        ) -> list[tuple[float, bool]]:
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_save_'))
    joints = [f'j{i}' for i in range(7 if big else 3)]
    params = dict(BIG) if big else {}
    proc = launch(tmp, 'node', checkpoint_path=str(tmp / 'ck' / 'arm'), joint_names=joints,
                  torque_limits=[50.0] * len(joints), **params)
    h = Harness()
    stop = threading.Event()
    hogs: list = []
    out = []
    try:
        wait_up(proc)
        h.wait_for_node(proc)
        sender = threading.Thread(target=stream, args=(h, joints, rate, stop), daemon=True)
        sender.start()
        if hog:
            hogs = cpu_hogs(2)
        time.sleep(warmup)
        for _ in range(calls):
            t0 = time.monotonic()
            try:
                res = _call(h, timeout=120.0)
                out.append((time.monotonic() - t0, bool(res.success)))
            except AssertionError:
                out.append((float('inf'), False))
            time.sleep(1.0)
    finally:
        stop.set()
        end(hogs)
        h.close()
        stop_node(proc)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--calls', type=int, default=3)
    ap.add_argument('--rate', type=float, default=1000.0)
    ap.add_argument('--warmup', type=float, default=5.0)
    ap.add_argument('--big', action='store_true', help='7 joints, the default networks')
    args = ap.parse_args()
    lines = [format_machine(machine_info()),
             f'{args.rate:.0f} Hz stream, {args.warmup:.0f} s before the first call, '
             f'{args.calls} calls 1 s apart, '
             f'{"7 joints, default networks" if args.big else "3 joints, small networks"}',
             f'{"CPU hog":8} {"answer s":>9} success']
    print('\n'.join(lines), flush=True)
    for hog in (False, True):
        for took, ok in one(hog, args.calls, args.rate, args.warmup, args.big):
            line = f'{"2 loops" if hog else "-":8} {took:9.2f} {ok}'
            lines.append(line)
            print(line, flush=True)
    save_results('save_under_hog' + ('_big' if args.big else ''), '\n'.join(lines) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
