#!/usr/bin/env python3
"""Soak test: ``--minutes`` of 1 kHz JointStates with a mix of bad input into a real invdyn_node.

What it does (issue 15's probe, as a script):

1. starts ``python -m invdyn_ros.ros.node`` (``bench/latency.py``'s bench parameters: the KUKA's 7
   joints and torque limits, dual LSTM + GRU, trainer ``process``) in a private ROS domain;
2. publishes JointStates at ``--rate`` Hz (a smooth 7-joint motion with a known torque,
   ``latency.trajectory``) and references (``~/reference``, every 10th message), with the bad
   input of the probe mixed in: NaN positions, wrong lengths, unknown joint names, bursts of 30
   messages 10 us apart, stamps 40 ms in the future, efforts of 9000 N m (above the 176 N m
   limit), NaN references;
3. subscribes ``~/predicted_effort`` and ``~/feedforward`` and checks every message: NaN/Inf
   and values beyond ``torque_limits`` (both must stay 0);
4. every ``--report-every`` s prints the node's and its children's (trainer, resource tracker)
   resident memory, the counts of messages, and a few of the node's ``/diagnostics`` counters.

Exit status 1 when a NaN/Inf or over-limit output was seen or the node died, else 0.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 1000] [--report-every 30]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from latency import DEFAULT_PARAMS, KUKA_JOINTS, trajectory, write_params  # noqa: E402

from common import (REPO, Recorder, format_machine, machine_info, private_ros_env,  # noqa: E402
                    spin_in_background, stop_node_process)

#: Bad input kinds and how often each comes (every k-th message; primes so they rarely meet).
BAD_EVERY = {'nan_position': 97, 'wrong_length': 101, 'unknown_names': 103,
             'future_stamp': 107, 'huge_effort': 109}
BURST_EVERY_S = 10.0          # a burst of BURST_LEN messages 10 us apart this often
BURST_LEN = 30
REFERENCE_EVERY = 10          # one reference per this many joint states
BAD_REFERENCE_EVERY = 53      # every 53rd reference has a NaN
DIAG_KEYS = ('received', 'outputs', 'ready', 'rate_hz_estimated', 'missed_by_stamp_gap',
             'lost_by_dds', 'recent_nmse')


def rss_mb(pid: int) -> float | None:
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, short command) of the direct children of ``pid``."""
    out = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / 'stat').read_text()
            ppid = int(stat[stat.rindex(')') + 2:].split()[1])
            if ppid != pid:
                continue
            cmd = (entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode(errors='replace')
        except (OSError, ValueError):
            continue
        kind = 'resource_tracker' if 'resource_tracker' in cmd else 'trainer'
        out.append((int(entry.name), kind))
    return sorted(out)


class Outputs:
    """Counts and checks what the node publishes."""

    def __init__(self, limits: np.ndarray) -> None:
        self.limits = limits
        self.lock = threading.Lock()
        self.counts = {'predicted_effort': 0, 'feedforward': 0, 'nonfinite': 0,
                       'over_limit': 0, 'wrong_length': 0}
        self.diag: dict[str, str] = {}

    def check(self, kind: str, values) -> None:
        v = np.asarray(values, dtype=np.float64)
        with self.lock:
            self.counts[kind] += 1
            if v.shape != self.limits.shape:
                self.counts['wrong_length'] += 1
            elif not np.isfinite(v).all():
                self.counts['nonfinite'] += 1
            elif (np.abs(v) > self.limits + 1e-9).any():
                self.counts['over_limit'] += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--minutes', type=float, default=10.0)
    ap.add_argument('--rate', type=float, default=1000.0)
    ap.add_argument('--report-every', type=float, default=30.0, help='seconds between reports')
    ap.add_argument('--trainer', default='process')
    args = ap.parse_args(argv)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from trajectory_msgs.msg import JointTrajectoryPoint

    out = Recorder()
    out(format_machine(machine_info()))
    env = private_ros_env('invdyn_soak_log_')
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_soak_'))
    params = dict(DEFAULT_PARAMS, trainer=args.trainer)
    limits = np.asarray(params['torque_limits'], dtype=np.float64)
    pfile = write_params(tmp / 'soak.yaml', params)
    log = open(tmp / 'node.log', 'w')
    node_proc = subprocess.Popen([sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args',
                                  '--params-file', str(pfile)], env=env, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=str(REPO))
    out(f'soak: {args.minutes:g} min at {args.rate:g} Hz, bad input every '
        + ', '.join(f'{k} 1/{v}' for k, v in BAD_EVERY.items())
        + f', a burst of {BURST_LEN} messages 10 us apart every {BURST_EVERY_S:g} s, references '
        f'1/{REFERENCE_EVERY} (NaN 1/{BAD_REFERENCE_EVERY}); node pid {node_proc.pid}, '
        f'log {tmp / "node.log"}')

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('invdyn_soak', context=ctx)
    js_pub = node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    ref_pub = node.create_publisher(JointTrajectoryPoint, '/invdyn_node/reference',
                                    qos_profile_sensor_data)
    outputs = Outputs(limits)
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(JointState, '/invdyn_node/predicted_effort',
                             lambda m: outputs.check('predicted_effort', m.effort), reliable)
    node.create_subscription(Float64MultiArray, '/invdyn_node/feedforward',
                             lambda m: outputs.check('feedforward', m.data), reliable)

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if 'inverse dynamics' in st.name:
                with outputs.lock:
                    outputs.diag = {kv.key: kv.value for kv in st.values}

    node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    stop, spinner = spin_in_background(ex)
    sent = {'good': 0, 'burst': 0, 'references': 0, 'bad_references': 0,
            **{k: 0 for k in BAD_EVERY}}
    rss_rows: list[tuple[float, float, float]] = []
    died = None
    try:
        t0 = time.monotonic()
        while js_pub.get_subscription_count() == 0 or \
                node.count_publishers('/invdyn_node/predicted_effort') == 0:
            if node_proc.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f'node not up:\n{(tmp / "node.log").read_text()[-3000:]}')
            time.sleep(0.1)
        time.sleep(1.0)
        period = 1.0 / args.rate
        n_total = int(args.minutes * 60.0 * args.rate)
        burst_every = int(BURST_EVERY_S * args.rate)
        base_ns = 1_700_000_000 * 1_000_000_000
        names = list(KUKA_JOINTS)
        start = time.perf_counter()
        next_report = args.report_every
        out(f'{"t (s)":>6s} {"node MB":>8s} {"trainer MB":>10s} {"other MB":>8s} '
            f'{"js sent":>8s} {"pred out":>8s} {"ff out":>7s} {"NaN/Inf":>7s} {"over lim":>8s}  '
            f'diagnostics')

        def stamp_msg(msg, ns: int) -> None:
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)

        def report(elapsed: float) -> None:
            kids = children(node_proc.pid)
            trainer = sum(rss_mb(p) or 0.0 for p, kind in kids if kind == 'trainer')
            other = sum(rss_mb(p) or 0.0 for p, kind in kids if kind != 'trainer')
            node_mb = rss_mb(node_proc.pid) or 0.0
            rss_rows.append((elapsed, node_mb, trainer))
            with outputs.lock:
                c = dict(outputs.counts)
                d = {k: outputs.diag.get(k, '-') for k in DIAG_KEYS}
            total = sent['good'] + sent['burst'] + sum(sent[k] for k in BAD_EVERY)
            out(f'{elapsed:6.0f} {node_mb:8.0f} {trainer:10.0f} {other:8.0f} {total:8d} '
                f'{c["predicted_effort"]:8d} {c["feedforward"]:7d} {c["nonfinite"]:7d} '
                f'{c["over_limit"]:8d}  ' + ' '.join(f'{k}={v}' for k, v in d.items()))

        msg = JointState()
        i = 0
        while i < n_total:
            target = start + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elapsed = time.perf_counter() - start
            if elapsed >= next_report:
                if node_proc.poll() is not None:
                    died = node_proc.returncode
                    break
                report(elapsed)
                next_report += args.report_every
            q, qd, tau = (a[0] for a in trajectory(np.array([i]), args.rate))
            ns = base_ns + int(round(i * period * 1e9))
            if i > 0 and i % burst_every == 0:          # 30 messages 10 us apart
                for b in range(BURST_LEN):
                    qb, qdb, taub = (a[0] for a in trajectory(np.array([i + b * 0.01]),
                                                              args.rate))
                    stamp_msg(msg, ns + b * 10_000)
                    msg.name, msg.position = names, qb.tolist()
                    msg.velocity, msg.effort = qdb.tolist(), taub.tolist()
                    js_pub.publish(msg)
                    sent['burst'] += 1
                i += 1
                continue
            kind = next((k for k, every in BAD_EVERY.items() if i % every == every - 1), None)
            msg.name, msg.position, msg.velocity, msg.effort = (
                names, q.tolist(), qd.tolist(), tau.tolist())
            stamp_msg(msg, ns)
            if kind == 'nan_position':
                msg.position = [float('nan')] + q[1:].tolist()
            elif kind == 'wrong_length':
                msg.velocity = qd[:-2].tolist()
            elif kind == 'unknown_names':
                msg.name = [f'no_such_joint_{k}' for k in range(len(names))]
            elif kind == 'future_stamp':
                stamp_msg(msg, ns + 40_000_000)
            elif kind == 'huge_effort':
                msg.effort = [9000.0] + tau[1:].tolist()
            js_pub.publish(msg)
            sent[kind or 'good'] += 1
            if i % REFERENCE_EVERY == 0:
                q2, qd2, _ = trajectory(np.array([i + 1]), args.rate)
                point = JointTrajectoryPoint(positions=q2[0].tolist(),
                                             velocities=qd2[0].tolist(),
                                             accelerations=[0.0] * len(names))
                if (i // REFERENCE_EVERY) % BAD_REFERENCE_EVERY == BAD_REFERENCE_EVERY - 1:
                    point.positions = [float('nan')] * len(names)
                    sent['bad_references'] += 1
                ref_pub.publish(point)
                sent['references'] += 1
            i += 1
        else:
            time.sleep(2.0)
            report(time.perf_counter() - start)
    finally:
        alive = node_proc.poll() is None
        stop_node_process(node_proc)
        stop.set()
        spinner.join(2.0)
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        log.close()

    c = outputs.counts
    out(f'sent: {sent}')
    out(f'received: predicted_effort {c["predicted_effort"]}, feedforward {c["feedforward"]}; '
        f'NaN/Inf {c["nonfinite"]} (must be 0), over the torque limits {c["over_limit"]} (must '
        f'be 0), wrong length {c["wrong_length"]}')
    if rss_rows:
        first, last = rss_rows[0], rss_rows[-1]
        out(f'RSS: node {first[1]:.0f} -> {last[1]:.0f} MB, trainer {first[2]:.0f} -> '
            f'{last[2]:.0f} MB (first report at {first[0]:.0f} s, last at {last[0]:.0f} s)')
    with outputs.lock:
        final = dict(outputs.diag)
    counters = {k: v for k, v in final.items()
                if any(w in k for w in ('rejected', 'dropped', 'missed', 'lost', 'clamped',
                                        'burst', 'future', 'rate'))}
    out(f'node diagnostics at the end: {counters}')
    out(f'node {"exited with " + str(died) if died is not None else "alive until the end"}'
        f'{"" if alive else " (not alive at the end)"}; stopped with exit status '
        f'{node_proc.returncode}')
    ok = c['nonfinite'] == 0 and c['over_limit'] == 0 and died is None and alive
    out('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
