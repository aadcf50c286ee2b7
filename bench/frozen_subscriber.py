#!/usr/bin/env python3
"""Does a frozen (SIGSTOPped) subscriber of ``~/predicted_effort`` stall invdyn_node's control loop?

A probe saw callback latency max 5.7 ms (p99 516 us, from 248) and another subscriber getting
1-227 messages/s for 2 s while a reliable subscriber was frozen with SIGSTOP. This script
measures it:

1. starts ``python -m invdyn_ros.ros.node`` (the bench parameters of ``bench/latency.py``, trainer
   ``process``) in its own ROS domain;
2. starts a second process that subscribes ``~/predicted_effort`` (``--frozen-qos`` reliable or
   best_effort, depth ``--frozen-depth``) and does nothing else;
3. publishes 7-joint JointStates at ``--rate`` Hz from this process, which also subscribes
   ``~/predicted_effort`` (reliable) and counts what arrives per second, and reads the node's
   ``/diagnostics`` (callback latency p50 / p99 / max of every period);
   ``publish() p50`` = callback p50 - hand-off p50 (the hand-off stops when ``publish()`` is
   called): if a frozen reliable reader made the node's ``publish()`` block, this grows while
   the reader is frozen; CPU contention moves both p50s alike;
4. phases: ``--warmup`` s (not reported), ``before`` s, ``frozen`` s (SIGSTOP to the second
   subscriber), ``after`` s (SIGCONT). A diagnostics period is reported in the phase in which it
   was published, except the first period after each boundary (it straddles it).

``--publication-mode SYNCHRONOUS|ASYNCHRONOUS`` sets ``RMW_FASTRTPS_PUBLICATION_MODE`` for the node
(Fast DDS: publish() writes to the transport in the caller's thread, or hands the sample to a
sending thread).

Usage::

    .venv/bin/python bench/frozen_subscriber.py                         # 5 s per phase
    .venv/bin/python bench/frozen_subscriber.py --frozen-qos best_effort
    .venv/bin/python bench/frozen_subscriber.py --publication-mode ASYNCHRONOUS
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from latency import DEFAULT_PARAMS, KUKA_JOINTS, trajectory, write_params  # noqa: E402

from common import (REPO, Recorder, format_machine, format_table, machine_info,  # noqa: E402
                    private_ros_env, spin_in_background, stop_node_process)

FROZEN_SUBSCRIBER = r'''
import sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import JointState
rclpy.init()
node = rclpy.create_node('frozen_subscriber')
qos = QoSProfile(depth=int(sys.argv[2]), history=HistoryPolicy.KEEP_LAST,
                 reliability=ReliabilityPolicy.RELIABLE if sys.argv[1] == 'reliable'
                 else ReliabilityPolicy.BEST_EFFORT)
count = [0]
node.create_subscription(JointState, '/invdyn_node/predicted_effort',
                         lambda m: count.__setitem__(0, count[0] + 1), qos)
print('subscribed', flush=True)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, Exception):
    pass
'''

PHASES = ('before', 'frozen', 'after')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rate', type=float, default=1000.0)
    ap.add_argument('--warmup', type=float, default=8.0)
    ap.add_argument('--phase', type=float, default=5.0, help='seconds per phase')
    ap.add_argument('--frozen-qos', choices=('reliable', 'best_effort'), default='reliable')
    ap.add_argument('--frozen-depth', type=int, default=10)
    ap.add_argument('--publication-mode', default='',
                    help='RMW_FASTRTPS_PUBLICATION_MODE for the node (default: unset)')
    ap.add_argument('--trainer', default='process')
    args = ap.parse_args(argv)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    out = Recorder()
    out(format_machine(machine_info()))
    env = private_ros_env('invdyn_bench_log_')
    node_env = dict(env)
    if args.publication_mode:
        node_env['RMW_FASTRTPS_PUBLICATION_MODE'] = args.publication_mode
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_frozen_'))
    params = write_params(tmp / 'bench.yaml', DEFAULT_PARAMS)
    log = open(tmp / 'node.log', 'w')
    node_proc = subprocess.Popen([sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args',
                                  '--params-file', str(params), '-p', f'trainer:={args.trainer}'],
                                 env=node_env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    frozen = subprocess.Popen([sys.executable, '-c', FROZEN_SUBSCRIBER, args.frozen_qos,
                               str(args.frozen_depth)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    pub_ctx, sub_ctx = Context(), Context()
    rclpy.init(context=pub_ctx)
    rclpy.init(context=sub_ctx)
    pub_node = rclpy.create_node('frozen_bench_pub', context=pub_ctx)
    sub_node = rclpy.create_node('frozen_bench_sub', context=sub_ctx)
    pub = pub_node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    arrivals: list[float] = []
    diags: list[dict] = []
    sub_node.create_subscription(JointState, '/invdyn_node/predicted_effort',
                                 lambda m: arrivals.append(time.perf_counter()),
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if 'inverse dynamics' in st.name:
                diags.append({kv.key: kv.value for kv in st.values} | {'_t': time.perf_counter()})

    sub_node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 50)
    ex = SingleThreadedExecutor(context=sub_ctx)
    ex.add_node(sub_node)
    stop, spinner = spin_in_background(ex)
    bounds: dict[str, float] = {}
    lags: dict[str, list[float]] = {p: [] for p in PHASES}
    try:
        assert frozen.stdout is not None
        assert frozen.stdout.readline().strip() == 'subscribed'
        t0 = time.monotonic()
        while sub_node.count_subscribers('/invdyn_node/predicted_effort') < 2 or \
                sub_node.count_publishers('/invdyn_node/predicted_effort') == 0 or \
                pub_node.count_subscribers('/joint_states') == 0:
            if node_proc.poll() is not None or time.monotonic() - t0 > 180:
                raise RuntimeError(f'not up:\n{(tmp / "node.log").read_text()[-3000:]}')
            time.sleep(0.1)
        time.sleep(1.0)
        rate = args.rate
        period = 1.0 / rate
        n_warm = int(args.warmup * rate)
        n_phase = int(args.phase * rate)
        n_total = n_warm + 3 * n_phase
        q, qd, tau = trajectory(np.arange(n_total), rate)
        msg = JointState()
        msg.name = list(KUKA_JOINTS)
        start = time.perf_counter()
        phase = None
        for i in range(n_total):
            if i >= n_warm and (i - n_warm) % n_phase == 0:
                phase = PHASES[(i - n_warm) // n_phase]
                bounds[phase] = time.perf_counter()
                if phase == 'frozen':
                    os.kill(frozen.pid, signal.SIGSTOP)
                elif phase == 'after':
                    os.kill(frozen.pid, signal.SIGCONT)
            target = start + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            elif phase is not None:
                lags[phase].append(-delay)
            ns = 1_000_000_000_000 + int(round(i * period * 1e9))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            msg.position = q[i].tolist()
            msg.velocity = qd[i].tolist()
            msg.effort = tau[i].tolist()
            pub.publish(msg)
        bounds['end'] = time.perf_counter()
        time.sleep(2.5)
    finally:
        if frozen.poll() is None:
            os.kill(frozen.pid, signal.SIGCONT)
            frozen.terminate()
        stop_node_process(node_proc)
        stop.set()
        spinner.join(2.0)
        ex.shutdown()
        for node, ctx in ((pub_node, pub_ctx), (sub_node, sub_ctx)):
            node.destroy_node()
            rclpy.shutdown(context=ctx)
        try:
            frozen.wait(10)
        except subprocess.TimeoutExpired:
            frozen.kill()

    arr = np.array(arrivals)
    rows = []
    edges = [bounds['before'], bounds['frozen'], bounds['after'], bounds['end']]
    for k, name in enumerate(PHASES):
        lo, hi = edges[k], edges[k + 1]
        # a diagnostics message describes the period before it: skip the one straddling lo
        ds = [d for d in diags if lo + 1.0 < d['_t'] <= hi + 0.5 and d.get('latency_samples')
              not in (None, '0')]

        def col(key: str) -> np.ndarray:
            return np.array([float(d[key]) for d in ds]) if ds else np.array([np.nan])

        secs = np.arange(lo, hi - 0.999, 1.0)
        per_s = [int(((arr >= s) & (arr < s + 1.0)).sum()) for s in secs]
        lag = np.array(lags[name]) * 1e3 if lags[name] else np.array([0.0])
        rows.append([name, len(ds), float(np.median(col('input_rate_hz'))),
                     float(np.median(col('callback_latency_p50_us'))),
                     float(np.median(col('callback_latency_p99_us'))),
                     float(np.max(col('callback_latency_p99_us'))),
                     float(np.max(col('callback_latency_max_us'))),
                     float(np.max(col('callback_handoff_p99_us'))),
                     float(np.median(col('callback_latency_p50_us') -
                                     col('callback_handoff_p50_us'))),
                     min(per_s) if per_s else -1, max(per_s) if per_s else -1,
                     float(lag.max())])
    lost = [d.get('lost_by_dds') for d in diags[-1:]]
    out(f'rate {args.rate:g} Hz, {args.phase:g} s per phase, frozen subscriber '
        f'{args.frozen_qos} depth {args.frozen_depth}, publication mode '
        f'{args.publication_mode or "(default)"}, trainer {args.trainer}; lost_by_dds at end '
        f'{lost}')
    out(format_table(['phase', 'periods', 'input Hz', 'cb p50 us (median)', 'cb p99 us (median)',
                      'cb p99 us (max)', 'cb max us', 'handoff p99 us (max)',
                      'publish() p50 us (cb - handoff)',
                      'other sub msg/s min', 'max', 'bench pub lag max ms'], rows,
                     floatfmt='.1f'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
