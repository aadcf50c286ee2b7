"""Helpers shared by the benchmark scripts: what machine a number was measured on, where the data is.

Benchmarks are scripts, not tests: their numbers are only comparable with the machine beside them,
so every script prints :func:`machine_info` first. The machine the project develops on is shared
(2 cores, other jobs running), hence the load average: a training time measured under load 5 is not
the time of an idle machine.
"""
from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

#: The repository root (bench/ lives directly below it).
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:   # the checkout's invdyn_ros, not a stale installed copy
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from invdyn_ros.offline.datasets import find_datasets_dir  # noqa: E402
# jsonable: one definition for metrics.json and bench results.
from invdyn_ros.offline.evaluation import jsonable  # noqa: E402,F401

__all__ = ['REPO', 'DATASET_PARAMS', 'cpu_model', 'machine_info', 'format_machine',
           'require_datasets_dir', 'format_table', 'results_dir', 'jsonable', 'save_results',
           'Recorder', 'private_ros_env', 'spin_in_background', 'stop_node_process']

#: The pipeline settings of the benches on the recorded datasets (node parameter names): Butterworth
#: order 2 at 10 Hz (these sets are 100-125 Hz) and Adam learning rate 1e-2, the rest the node's
#: defaults. Chosen for bench/kuka_core.py; why: bench/accuracy.py's docstring. Used by
#: accuracy.py, prior_datasets.py, lstm_real_arms.py and dual_window.py.
DATASET_PARAMS: dict[str, Any] = {'filter_order': 2, 'filter_cutoff_hz': 10.0,
                                  'learning_rate': 1e-2}


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else whatever :mod:`platform` knows."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or 'unknown'


def machine_info() -> dict[str, Any]:
    """CPU model, logical / usable cores, load average, torch / numpy / Python versions, threads."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        load = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load = None
    return {
        'cpu': cpu_model(),
        'logical_cores': os.cpu_count(),
        'usable_cores': usable,
        'load_average_1_5_15min': load,
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'cuda': torch.cuda.is_available(),
        'numpy': np.__version__,
        'python': platform.python_version(),
        'platform': platform.platform(),
    }


def format_machine(info: dict[str, Any]) -> str:
    """Two human-readable lines of :func:`machine_info`."""
    return (f"machine: {info['cpu']}, {info['usable_cores']}/{info['logical_cores']} cores usable, "
            f"load average {info['load_average_1_5_15min']}, CUDA {'yes' if info['cuda'] else 'no'}\n"
            f"software: torch {info['torch']} ({info['torch_threads']} threads), "
            f"numpy {info['numpy']}, Python {info['python']}, {info['platform']}")


def require_datasets_dir(path: str | None = None) -> Path:
    """The shared datasets folder (``path``, ``$INVDYN_DATASETS`` or ``<repo>/../shared/datasets``).

    Exits with a message (status 2) when it is missing: a benchmark without its data has nothing
    to say, and a traceback would hide the reason.
    """
    found = Path(path).expanduser() if path else find_datasets_dir()
    if found is None or not found.is_dir():
        sys.exit('datasets not found: pass --datasets DIR, set INVDYN_DATASETS, or check out '
                 'shared/datasets beside the repository')
    return found


def format_table(header: list[str], rows: list[list[Any]], floatfmt: str = '.4f') -> str:
    """A plain fixed-width text table (first column left-aligned, the rest right-aligned)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return format(v, floatfmt)
        return '-' if v is None else str(v)

    body = [[cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in body)) if body else len(str(h))
              for i, h in enumerate(header)]
    lines = ['  '.join(str(h).ljust(w) if i == 0 else str(h).rjust(w)
                       for i, (h, w) in enumerate(zip(header, widths)))]
    lines.append('  '.join('-' * w for w in widths))
    for r in body:
        lines.append('  '.join(v.ljust(w) if i == 0 else v.rjust(w)
                               for i, (v, w) in enumerate(zip(r, widths))))
    return '\n'.join(lines)


def panda_urdf_path() -> Path:
    """The Panda URDF of example-robot-data (the prior's robot in fast_path.py and latency.py)."""
    from invdyn_ros.sim.arm import find_robot_urdf  # noqa: PLC0415
    return find_robot_urdf('ur5').parents[2] / 'panda_description' / 'urdf' / 'panda.urdf'


def results_dir() -> Path:
    """bench/results/ (created): where every script saves the evidence behind its numbers."""
    path = REPO / 'bench' / 'results'
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_results(stem: str, text: str, data: Any = None, directory: Path | None = None
                 ) -> list[Path]:
    """Write ``<stem>.txt`` (the printed report) and, with ``data``, ``<stem>.json`` into
    ``directory`` (default :func:`results_dir`); returns the paths written."""
    import json

    out = Path(directory) if directory is not None else results_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f'{stem}.txt']
    paths[0].write_text(text if text.endswith('\n') else text + '\n', encoding='utf-8')
    if data is not None:
        paths.append(out / f'{stem}.json')
        paths[1].write_text(json.dumps(jsonable(data), indent=1, allow_nan=False) + '\n',
                            encoding='utf-8')
    return paths


class Recorder:
    """``print`` that also keeps the lines, so the saved .txt is exactly what was printed."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, *parts: Any, sep: str = ' ') -> None:
        line = sep.join(str(p) for p in parts)
        print(line, flush=True)
        self.lines.append(line)

    @property
    def text(self) -> str:
        return '\n'.join(self.lines) + '\n'


def private_ros_env(log_prefix: str) -> dict[str, str]:
    """The environment for a benchmark's ROS processes: a private domain (150-229, from the PID),
    discovery on localhost only, this checkout first on PYTHONPATH and a writable ROS_LOG_DIR. The
    domain and discovery range are also set in this process (its own rclpy context)."""
    domain = str(150 + os.getpid() % 80)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix=log_prefix))
    os.environ.update(ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    return env


def spin_in_background(executor: Any) -> tuple[threading.Event, threading.Thread]:
    """Spin ``executor`` in a daemon thread until the returned event is set (then join the
    thread)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    return stop, thread


def stop_node_process(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop a node started by a benchmark as Ctrl-C would (SIGINT: final checkpoint, trainer
    joined); SIGKILL if it has not exited within ``timeout`` seconds."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def track_recording(arm: Any, traj: Any, seconds: float, t0: float, kp: np.ndarray,
                    kd: np.ndarray, exact_torque: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The simulated ``arm`` follows ``traj`` for ``seconds`` with its true model as feedforward
    plus PD (``kp``, ``kd``), from the trajectory's start pose; returns the measured samples
    ``(t, q, qd, tau)`` (times from ``t0``; with ``exact_torque`` the applied torque without the
    sensor's noise)."""
    dt = arm.config.dt
    q0, _, _ = traj.sample(0.0)
    arm.reset(q0)
    T, Q, QD, TAU = [], [], [], []
    for k in range(int(round(seconds / dt))):
        qr, qdr, qddr = traj.sample(k * dt)
        q, qd = arm.true_state()
        command = arm.rnea(qr, qdr, qddr) + kp * (qr - q) + kd * (qdr - qd)
        arm.step(command)
        mq, mqd, mtau = arm.measure()
        T.append(t0 + (k + 1) * dt)
        Q.append(mq)
        QD.append(mqd)
        TAU.append(command if exact_torque else mtau)
    return np.array(T), np.array(Q), np.array(QD), np.array(TAU)
