#!/usr/bin/env python3
"""How long invdyn_node takes to stop, and when its final checkpoint is written.

For each case (SIGINT / SIGTERM, to the node or to its whole process group, with or without two
busy-loop processes hogging both cores) it starts ``python -m invdyn_ros.ros.node`` with the process
trainer and a checkpoint path (the small network of test/test_faults.py), waits until it runs,
sends the signal and prints: signal -> the ``final checkpoint written`` log line, signal -> exit,
the exit code, and whether a child process (trainer, resource tracker) outlived the node.

Usage::

    .venv/bin/python bench/stop_time.py            # all 8 cases, once each
    .venv/bin/python bench/stop_time.py --repeat 3
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / 'test'), str(REPO)]

from test_faults import alive, cpu_hogs, descendants, end, launch, log_of, wait_up  # noqa: E402

import conftest  # noqa: E402,F401  (isolated ROS environment: own domain, localhost)


def one(sig: str, target: str, hog: bool) -> tuple[float, float, int, int]:
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_stop_'))
    proc = launch(tmp, 'node', checkpoint_path=str(tmp / 'ck' / 'arm'))
    hogs = []
    try:
        wait_up(proc)
        time.sleep(1.0)
        children = descendants(proc.pid)
        if hog:
            hogs = cpu_hogs(2)
            time.sleep(0.5)
        wall0, t0 = time.time(), time.monotonic()
        (os.killpg if target == 'group' else os.kill)(proc.pid, getattr(signal, sig))
        proc.wait(120)
        took = time.monotonic() - t0
        time.sleep(0.2)
        left = sum(alive(c) for c in children)
    finally:
        end(hogs)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    m = re.search(r'\[(\d+\.\d+)\] \[invdyn_node\]: final checkpoint written', log_of(proc))
    saved = float(m.group(1)) - wall0 if m else float('nan')
    proc.log_file.close()  # type: ignore[attr-defined]
    return saved, took, proc.returncode, left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeat', type=int, default=1)
    args = ap.parse_args()
    print(f'load average before: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)')
    print(f'{"signal":8} {"to":6} {"CPU hog":8} {"checkpoint s":>12} {"exit s":>7} {"rc":>3} '
          f'{"children left":>13}')
    for hog in (False, True):
        for sig, target in (('SIGINT', 'node'), ('SIGTERM', 'node'), ('SIGINT', 'group'),
                            ('SIGTERM', 'group')):
            for _ in range(args.repeat):
                saved, took, rc, left = one(sig, target, hog)
                print(f'{sig:8} {target:6} {"2 loops" if hog else "-":8} {saved:12.2f} '
                      f'{took:7.2f} {rc:3d} {left:13d}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
