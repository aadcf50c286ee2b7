"""The UR10 recording through the live node: time from the first motion to ready, and the error
once ready (issue 14).

    bench/ur10_replay.py [--duration 60] [--variants today,floors,floors_rnea] [--datasets DIR]

Converts the Polydoros 2015 UR10 pick-and-place recording (125 Hz, 5 kg payload) into a bag once
(``invdyn_bag``), then for each variant starts a real ``invdyn_node`` with ``config/ur10.yaml``
(normal scheduling: ``realtime_priority 0``; no checkpoint) and replays the bag at its own rate
with ``invdyn_replay`` (``--rate 1``, recorded stamps), in a private ROS domain. Variants:

* ``today``: the readiness floor before ``ready_min_seconds`` (ur5.yaml's 2500 samples, 0 s), no
  prior, no URDF (``feedforward_mode total``);
* ``floors``: the shipped floors of config/ur10.yaml, no prior, no URDF;
* ``floors_rnea``: the shipped floors, ``prior rnea`` with example-robot-data's ur10 URDF and the
  5 kg payload (config/ur10.yaml as shipped, only the URDF path added);
* ``today_rnea``: the old floor with the prior.

Measured per variant, from what the node publishes:

* ready after: the recorded stamp (s from the start of the recording, and from the first motion,
  |qd| > 0.01 rad/s on any joint) of the input whose ``~/predicted_effort`` came just before the
  first non-zero ``~/feedforward`` (the feedforward is zero until ready); also the first
  ``/diagnostics`` (1 Hz) that says ready, and how often ready was lost afterwards;
* the node's rolling nMSE (``recent_nmse`` in ``/diagnostics``: the last ``ready_window`` scored
  samples, scaled by the node's own torque scale) after ready: median and max;
* the bench's own nMSE of ``~/predicted_effort`` against the recorded effort (at the stamp minus
  the node's filter delay), per joint scaled by the recording's effort variance: after ready, and
  its worst 8 s window; and over the last 20 s replayed, ready or not.

Prints the machine (load included: the development machine is shared) and writes
bench/results/ur10_replay.txt / .json.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np  # noqa: E402

from common import (REPO, Recorder, format_machine, machine_info, private_ros_env,  # noqa: I100
                    require_datasets_dir, save_results, spin_in_background, stop_node_process)

START_NS = 1_700_000_000 * 1_000_000_000          # invdyn_bag's default stamp of t = 0
MOTION_QD = 0.01                                   # rad/s: "moving"
WINDOW_S = 8.0                                     # the bench's own windows (1000 samples)

VARIANTS = {
    'today': {'prior': 'none', 'feedforward_mode': 'total', 'ready_min_samples': 2500,
              'ready_min_seconds': 0.0},
    'floors': {'prior': 'none', 'feedforward_mode': 'total'},
    'floors_rnea': {'prior': 'rnea'},
    'today_rnea': {'prior': 'rnea', 'ready_min_samples': 2500, 'ready_min_seconds': 0.0},
}


def write_params(path: Path, params: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({'invdyn_node': {'ros__parameters': params}}))
    return path


class Listener:
    """What the node publishes, with the bench's monotonic receive times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pe: list[tuple[float, int, list]] = []       # (recv, stamp ns, effort)
        self.ff_first_nonzero: float | None = None
        self.ff_count = 0
        self.ff_zero_after_ready = 0
        self.diag: list[tuple[float, dict]] = []

    def on_pe(self, msg) -> None:
        now = time.monotonic()
        with self.lock:
            self.pe.append((now, msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec,
                            list(msg.effort)))

    def on_ff(self, msg) -> None:
        now = time.monotonic()
        nonzero = any(v != 0.0 for v in msg.data)
        with self.lock:
            self.ff_count += 1
            if nonzero and self.ff_first_nonzero is None:
                self.ff_first_nonzero = now
            elif not nonzero and self.ff_first_nonzero is not None:
                self.ff_zero_after_ready += 1

    def on_diag(self, msg) -> None:
        now = time.monotonic()
        for st in msg.status:
            if 'inverse dynamics' in st.name:
                with self.lock:
                    self.diag.append((now, {kv.key: kv.value for kv in st.values}))


def run_variant(name: str, overrides: dict, bag: Path, duration: float, rec, t_motion: float,
                env: dict, tmp: Path, out) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from invdyn_ros.sim.arm import find_robot_urdf

    params = {'checkpoint_path': '', 'realtime_priority': 0, **overrides}
    if params.get('prior') == 'rnea':
        params['urdf_path'] = str(find_robot_urdf('ur10'))
    pfile = write_params(tmp / f'{name}.yaml', params)
    log_path = tmp / f'{name}.node.log'
    log = open(log_path, 'w')
    node_proc = subprocess.Popen(
        [sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args', '-r', '__node:=invdyn_node',
         '--params-file', str(REPO / 'config' / 'ur10.yaml'), '--params-file', str(pfile)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node(f'invdyn_ur10_bench_{name}', context=ctx)
    lis = Listener()
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(JointState, '/invdyn_node/predicted_effort', lis.on_pe, reliable)
    node.create_subscription(Float64MultiArray, '/invdyn_node/feedforward', lis.on_ff, reliable)
    node.create_subscription(DiagnosticArray, '/diagnostics', lis.on_diag, 50)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop, spinner = spin_in_background(ex)
    replay = None
    try:
        t0 = time.monotonic()
        while node.count_publishers('/invdyn_node/predicted_effort') == 0 or \
                node.count_subscribers('/joint_states') == 0:
            if node_proc.poll() is not None or time.monotonic() - t0 > 300:
                raise RuntimeError(f'node not up:\n{log_path.read_text()[-3000:]}')
            time.sleep(0.1)
        time.sleep(1.0)
        replay_log = open(tmp / f'{name}.replay.log', 'w')
        replay = subprocess.Popen(
            [sys.executable, '-m', 'invdyn_ros.cli.invdyn_replay', str(bag), '--rate', '1',
             '--wait-for-subscribers', '1', '--wait-timeout', '60'],
            env=env, stdout=replay_log, stderr=subprocess.STDOUT, cwd=str(REPO))
        t_replay = time.monotonic()
        while time.monotonic() - t_replay < duration and replay.poll() is None:
            time.sleep(0.2)
        load = machine_info()['load_average_1_5_15min']
    finally:
        if replay is not None and replay.poll() is None:
            stop_node_process(replay, timeout=10.0)
        time.sleep(1.5)                  # the last diagnostics / outputs
        stop.set()
        spinner.join()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        stop_node_process(node_proc)
        log.close()
    return analyse(name, params, lis, rec, t_motion, load, out)


def analyse(name: str, params: dict, lis: Listener, rec, t_motion: float, load, out) -> dict:
    with lis.lock:
        pe = list(lis.pe)
        diag = list(lis.diag)
        ff_first = lis.ff_first_nonzero
    res: dict = {'variant': name, 'params': {k: v for k, v in params.items() if k != 'urdf_path'},
                 'load_at_end': load, 'predicted_effort_msgs': len(pe),
                 'zero_feedforward_after_ready': lis.ff_zero_after_ready}
    if not pe:
        out(f'{name}: no ~/predicted_effort received')
        return res
    recv = np.array([p[0] for p in pe])
    stamp_s = (np.array([p[1] for p in pe], dtype=np.int64) - START_NS) * 1e-9
    eff = np.array([p[2] for p in pe], dtype=np.float64)
    t_ready = None
    if ff_first is not None:
        k = int(np.searchsorted(recv, ff_first, side='right')) - 1
        t_ready = float(stamp_s[max(k, 0)])
    res['ready_stamp_s'] = t_ready
    res['ready_after_motion_s'] = None if t_ready is None else t_ready - t_motion
    # diagnostics: first ready, losses, the node's recent_nmse after ready
    ready_flags = [(t, d.get('ready') == 'True', d.get('recent_nmse')) for t, d in diag]
    first_diag = next((t for t, r, _ in ready_flags if r), None)
    losses = sum(1 for a, b in zip(ready_flags, ready_flags[1:]) if a[1] and not b[1])
    res['ready_lost_in_diagnostics'] = losses
    after = [float(v) for t, r, v in ready_flags
             if first_diag is not None and t >= first_diag and v not in (None, 'None', '')]
    res['node_recent_nmse_after_ready'] = {
        'median': float(np.median(after)) if after else None,
        'max': float(np.max(after)) if after else None, 'n': len(after)}
    delay = next((float(d['filter_delay_ms']) * 1e-3 for _, d in reversed(diag)
                  if d.get('filter_delay_ms') not in (None, 'None', '')), 0.0)
    res['filter_delay_s'] = delay
    # the bench's nMSE against the recording (stamp - delay, interpolated)
    t_rec = rec.t
    tau = np.stack([np.interp(stamp_s - delay, t_rec, rec.tau[:, j])
                    for j in range(rec.n_joints)], axis=1)
    var = rec.tau.var(axis=0)
    ok = np.isfinite(eff).all(axis=1)
    if t_ready is not None:
        sel = ok & (stamp_s >= t_ready)
        e2 = np.square(eff[sel] - tau[sel])
        res['bench_nmse_after_ready'] = float(np.mean(e2.mean(axis=0) / var)) if sel.any() else None
        res['bench_nmse_after_ready_per_joint'] = (e2.mean(axis=0) / var).tolist() \
            if sel.any() else None
        ts = stamp_s[sel]
        worst = None
        for lo in np.arange(t_ready, ts[-1] - WINDOW_S + 1e-9, 1.0) if sel.any() else []:
            w = (ts >= lo) & (ts < lo + WINDOW_S)
            if w.sum() > 100:
                v = float(np.mean(e2[w].mean(axis=0) / var))
                worst = v if worst is None else max(worst, v)
        res['bench_nmse_worst_8s_window_after_ready'] = worst
    res['replayed_s'] = float(stamp_s[-1] - stamp_s[0])
    # ready or not: the bench's nMSE of the last 20 s replayed (what the node would have sent)
    last = ok & (stamp_s >= stamp_s[-1] - 20.0)
    if last.any():
        e2 = np.square(eff[last] - tau[last]).mean(axis=0) / var
        res['bench_nmse_last_20s'] = float(np.mean(e2))
        res['bench_nmse_last_20s_per_joint'] = e2.tolist()
    # the node's recent_nmse over the run: (recording time of the newest output, nMSE, ready)
    series = []
    for t, d in diag:
        k = int(np.searchsorted(recv, t, side='right')) - 1
        v = d.get('recent_nmse')
        if k >= 0 and v not in (None, 'None', ''):
            series.append((round(float(stamp_s[k]), 2), float(v), d.get('ready') == 'True'))
    res['node_recent_nmse_series'] = series
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--duration', type=float, default=60.0,
                    help='seconds of the recording to replay per variant')
    ap.add_argument('--variants', default='today,floors,floors_rnea')
    ap.add_argument('--datasets', default=None)
    ap.add_argument('--stem', default='ur10_replay', help='results file stem')
    args = ap.parse_args(argv)
    names = [v.strip() for v in args.variants.split(',') if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        ap.error(f'unknown variants {bad}; choose from {sorted(VARIANTS)}')

    import yaml

    from invdyn_ros.offline.datasets import load_ur10

    out = Recorder()
    out(format_machine(machine_info()))
    data_dir = require_datasets_dir(args.datasets)
    rec = load_ur10(data_dir / 'ur10_polydoros2015')
    moving = np.flatnonzero(np.abs(rec.qd).max(axis=1) > MOTION_QD)
    t_motion = float(rec.t[moving[0]])
    shipped = yaml.safe_load((REPO / 'config' / 'ur10.yaml').read_text())
    shipped = shipped['invdyn_node']['ros__parameters']
    out(f'UR10 recording: {rec.n_samples} samples at {rec.rate_hz:g} Hz ({rec.duration:.1f} s), '
        f'first motion at {t_motion:.2f} s; replaying {args.duration:g} s per variant at rate 1')
    out(f'config/ur10.yaml floors: ready_min_samples {shipped["ready_min_samples"]}, '
        f'ready_min_seconds {shipped.get("ready_min_seconds", 0.0)}, ready_window '
        f'{shipped["ready_window"]}, ready_nmse {shipped["ready_nmse"]}')
    env = private_ros_env('invdyn_ur10_log_')
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_ur10_'))
    bag = tmp / 'ur10_bag'
    subprocess.run([sys.executable, '-m', 'invdyn_ros.cli.invdyn_bag',
                    str(data_dir / 'ur10_polydoros2015'), '--format', 'ur10', '-o', str(bag)], env=env, cwd=str(REPO), check=True,
                   stdout=subprocess.DEVNULL)
    results = []
    for name in names:
        out(f'--- {name}: {VARIANTS[name]} (logs in {tmp})')
        res = run_variant(name, VARIANTS[name], bag, args.duration, rec, t_motion, env, tmp, out)
        results.append(res)
        nm = res.get('node_recent_nmse_after_ready', {})
        out(f'{name}: ready at {fmt(res.get("ready_stamp_s"))} s of the recording = '
            f'{fmt(res.get("ready_after_motion_s"))} s after the first motion; ready lost '
            f'{res.get("ready_lost_in_diagnostics")}x (diagnostics), zero feedforward after ready '
            f'{res["zero_feedforward_after_ready"]}; node recent_nmse after ready median '
            f'{fmt(nm.get("median"), 4)} max {fmt(nm.get("max"), 4)} ({nm.get("n")} diagnostics); '
            f'bench nMSE vs recording after ready {fmt(res.get("bench_nmse_after_ready"), 4)}, '
            f'worst 8 s window {fmt(res.get("bench_nmse_worst_8s_window_after_ready"), 4)}; '
            f'load at end {res["load_at_end"]}')
        series = res['node_recent_nmse_series'][::3]
        out('    node recent_nmse (recording s: nMSE, * = ready): ' + ', '.join(
            f'{t:.0f}: {v:.3g}{"*" if r else ""}' for t, v, r in series))
        if res.get('bench_nmse_last_20s') is not None:
            out(f'    bench nMSE vs recording, last 20 s replayed (ready or not): '
                f'{res["bench_nmse_last_20s"]:.3f}; per joint '
                + ', '.join(f'{v:.3f}' for v in res['bench_nmse_last_20s_per_joint']))
        if res.get('bench_nmse_after_ready_per_joint'):
            out('    per joint: ' + ', '.join(f'{v:.3f}' for v in
                                             res['bench_nmse_after_ready_per_joint']))
    out(format_machine(machine_info()))
    save_results(args.stem, out.text, {'results': results, 'machine': machine_info(),
                                       't_motion_s': t_motion})
    return 0


def fmt(v, digits: int = 2) -> str:
    return '-' if v is None else f'{v:.{digits}f}'


if __name__ == '__main__':
    sys.exit(main())
