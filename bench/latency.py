#!/usr/bin/env python3
"""End-to-end latency of invdyn_node over real DDS on loopback, with training running.

What it does, per variant (``--trainer`` x ``--executor``):

1. starts ``python -m invdyn_ros.ros.node --ros-args --params-file CONFIG`` as a subprocess in its own
   ROS domain (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), with ``-p trainer:=...``,
   ``-p executor:=...`` and no checkpoint;
2. publishes sensor_msgs/JointState on ``/joint_states`` at ``--rate`` Hz (sensor-data QoS, the
   driver's) for ``--warmup`` + ``--duration`` seconds: a smooth 7-joint trajectory with a known
   torque function, so the learner has something to learn and the trainer works all the time;
   every message has a unique ``header.stamp``;
3. subscribes ``~/predicted_effort`` and matches each output to its input by the stamp (the node
   copies it): **end-to-end latency** = receive time - publish time (``time.perf_counter``, one
   process, so one clock). This includes two DDS hops and the bench's own executor, so it is an
   upper bound of the node's share;
4. reads the node's **callback latency** (arrival in the callback -> ``~/predicted_effort``
   published, measured inside the node) from its ``/diagnostics`` (p50 / p99 per period);
5. samples the CPU time of the node process and of its trainer worker from ``/proc``;
6. with ``--trajectory-points P``: every ``--trajectory-period`` s of the measured window it also
   sends a JointTrajectory of P points (the node's joints, 10 ms apart, positions, velocities and
   accelerations) to ``~/trajectory_in`` from a process of its own, as a planner feeding
   joint_trajectory_controller through the node does. What that costs the control loop shows in
   ``lost after traj`` (joint states without an output among those sent in the 50 ms after each
   trajectory, beside ``lost before``: the same stretches half a period earlier), ``recv max``
   (``--executor single``: the worst joint state from the middleware's reception to its output)
   and ``lost``.

The latency budget of the issue (p99 <= 0.5 ms, median <= 0.2 ms, 7 joints at 1 kHz, training
running) is about the node: from a message's arrival to the publication of its prediction, i.e. the
*callback latency*. The end-to-end numbers are printed beside it.

Lost = inputs of the measured window without a matching output (dropped by DDS queues, by the
node's rejection of bad input -- there is none here -- or not published).

Usage::

    .venv/bin/python bench/latency.py --duration 10                     # process trainer, events
    .venv/bin/python bench/latency.py --duration 10 --repeat 5          # 5 runs + their median
    .venv/bin/python bench/latency.py --compare --duration 10   # process/thread, events/single
    .venv/bin/python bench/latency.py --config config/kuka_lwr.yaml --rate 1000
    .venv/bin/python bench/latency.py --prior -p realtime_priority:=50 --repeat 3   # prior: rnea
    .venv/bin/python bench/latency.py --prior --executor single --trajectory-points 1000

The machine matters more than anything: every report starts with the CPU model, core count, load
average and software versions (bench/common.py). On the shared 2-core development machine other
jobs compete for the same cores.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402

from common import (REPO, Recorder, format_machine, format_table, machine_info,  # noqa: E402
                    panda_urdf_path, save_results, spin_in_background, stop_node_process)

KUKA_JOINTS = [f'lbr_A{i}' for i in range(1, 8)]

#: Bench defaults: the KUKA config's joints and limits with a small, fast-starting learner setup.
DEFAULT_PARAMS = {
    'joint_names': KUKA_JOINTS,
    'torque_limits': [176.0, 176.0, 110.0, 110.0, 110.0, 40.0, 40.0],
    'window': 10,
    'hidden_size': 64,
    'num_layers': 2,
    'updates_per_sample': 0.02,
    'max_updates_per_sample': 0.2,
    'min_samples': 500,
    'ready_min_samples': 2000,
    'ready_window': 1000,
    'dual_window': 500,
    'publish_period_s': 1.0,
    'diagnostics_period_s': 1.0,
    'checkpoint_path': '',
}


PANDA_JOINTS = [f'panda_joint{i}' for i in range(1, 8)]


def bench_params(prior: bool) -> dict[str, Any]:
    """The bench's node parameters; ``prior``: with the physics prior (``prior: rnea``, the Panda
    URDF of example-robot-data, as ``bench/fast_path.py``: 7 joints, so the same stream and
    networks) and the Panda's joint names."""
    params = dict(DEFAULT_PARAMS)
    if prior:
        params.update(joint_names=PANDA_JOINTS, prior='rnea', urdf_path=str(panda_urdf_path()))
    return params


def write_params(path: Path, params: dict[str, Any]) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({'invdyn_node': {'ros__parameters': params}}))
    return path


def trajectory(i: np.ndarray | int, rate: float, n: int = 7) -> tuple[np.ndarray, ...]:
    """q, qd, tau of sample i: sums of sines with a smooth, known torque function (N m)."""
    t = np.asarray(i, dtype=np.float64) / rate
    k = np.arange(1, n + 1)
    w = 2 * np.pi * 0.15 * (1 + 0.3 * k)
    q = 0.8 * np.sin(np.multiply.outer(t, w) + k) + 0.2 * np.sin(np.multiply.outer(t, 2.3 * w))
    qd = 0.8 * w * np.cos(np.multiply.outer(t, w) + k) \
        + 0.46 * w * np.cos(np.multiply.outer(t, 2.3 * w))
    qdd = -0.8 * w ** 2 * np.sin(np.multiply.outer(t, w) + k) \
        - 1.058 * w ** 2 * np.sin(np.multiply.outer(t, 2.3 * w))
    tau = 20 * np.sin(q) / k + 2.0 * qd + 0.5 * qdd
    return q, qd, tau


def planned_trajectory(names: list[str], n_points: int, rate: float) -> Any:
    """A JointTrajectory through ``n_points`` states of :func:`trajectory`, 10 ms apart (what a
    planner sends joint_trajectory_controller), with positions, velocities and accelerations."""
    from invdyn_ros.ros.trajectory_msgs_io import trajectory_message

    t = 0.01 * np.arange(n_points)
    i = np.round(t * rate).astype(int)
    q, qd, _ = trajectory(i, rate, len(names))
    w = 2 * np.pi * 0.15 * (1 + 0.3 * np.arange(1, len(names) + 1))
    qdd = -w ** 2 * q                      # roughly; the node only needs finite values
    return trajectory_message(names, t, q, qd, qdd)


SENDER = '''
import sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from trajectory_msgs.msg import JointTrajectory
sys.path.insert(0, {bench!r})
from latency import planned_trajectory
from rclpy.serialization import serialize_message
rclpy.init()
node = rclpy.create_node('latency_bench_trajectories')
pub = node.create_publisher(JointTrajectory, '/invdyn_node/trajectory_in',
                            QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
data = serialize_message(planned_trajectory({names!r}, {points}, {rate}))
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
first, period, count = (float(x) for x in sys.stdin.readline().split())
for k in range(int(count)):
    delay = first + k * period - time.perf_counter()
    if delay > 0:
        time.sleep(delay)
    t0 = time.perf_counter()
    pub.publish(data)
    print(t0, 1e3 * (time.perf_counter() - t0), flush=True)
node.destroy_node()
rclpy.shutdown()
'''


def start_trajectory_sender(env: dict, names: list[str], points: int, rate: float) -> Any:
    """A process that sends :func:`planned_trajectory` (serialized once) to the node's
    ``~/trajectory_in`` at the times written to its stdin (``first period count``, perf_counter
    s: CLOCK_MONOTONIC, the same in every process) and prints each send time and how long
    ``publish()`` took (ms). Its own process, so that sending 200 KB does not delay the stream."""
    code = SENDER.format(bench=str(Path(__file__).resolve().parent), names=names,
                         points=points, rate=rate)
    return subprocess.Popen([sys.executable, '-c', code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (s) from /proc/<pid>/stat."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')
    except (OSError, IndexError, ValueError):
        return None


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def trainer_pids(node_pid: int) -> list[int]:
    """The node's multiprocessing worker(s) (not the resource tracker)."""
    pids = []
    for c in children(node_pid):
        try:
            with open(f'/proc/{c}/cmdline', 'rb') as f:
                cmd = f.read().replace(b'\0', b' ')
        except OSError:
            continue
        if b'spawn_main' in cmd:
            pids.append(c)
    return pids


def run_variant(args: argparse.Namespace, trainer: str, executor: str, out: Recorder) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import JointState

    domain = str(args.domain if args.domain is not None else 100 + os.getpid() % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST',
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    env.setdefault('ROS_LOG_DIR', tempfile.mkdtemp(prefix='invdyn_bench_log_'))
    os.environ.update(ROS_DOMAIN_ID=domain, ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST')
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_bench_'))
    if args.config:
        params_file = Path(args.config)
        extra = ['-p', "checkpoint_path:=''"]
    else:
        params_file = write_params(tmp / 'bench.yaml', bench_params(args.prior))
        extra = []
    for override in args.param or []:
        extra += ['-p', override]
    cmd = [sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args', '--params-file', str(params_file),
           '-p', f'trainer:={trainer}', '-p', f'executor:={executor}', *extra]
    log_path = tmp / 'node.log'
    log = open(log_path, 'w')
    node_proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))

    # Publisher and subscriber live in separate contexts: the subscriber's executor spins in a
    # thread, the publisher is called from the main thread at the stream rate.
    pub_ctx, sub_ctx = Context(), Context()
    rclpy.init(context=pub_ctx)
    rclpy.init(context=sub_ctx)
    pub_node = rclpy.create_node('latency_bench_pub', context=pub_ctx)
    sub_node = rclpy.create_node('latency_bench_sub', context=sub_ctx)
    pub = pub_node.create_publisher(JointState, '/joint_states', qos_profile_sensor_data)
    names = list(PANDA_JOINTS if args.prior else KUKA_JOINTS)
    traj_every = max(1, int(round(args.trajectory_period * args.rate)))
    received: dict[int, float] = {}
    diags: list[dict[str, str]] = []

    def on_output(msg: JointState) -> None:
        received[msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec] = \
            time.perf_counter()

    def on_diag(msg: DiagnosticArray) -> None:
        for st in msg.status:
            if 'inverse dynamics' in st.name:
                diags.append({kv.key: kv.value for kv in st.values} | {'_t': time.perf_counter()})

    sub_node.create_subscription(JointState, '/invdyn_node/predicted_effort', on_output,
                                 QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    sub_node.create_subscription(DiagnosticArray, '/diagnostics', on_diag, 10)
    try:   # less overhead per received message than SingleThreadedExecutor
        from rclpy.experimental import EventsExecutor
        ex = EventsExecutor(context=sub_ctx)
    except ImportError:
        ex = SingleThreadedExecutor(context=sub_ctx)
    ex.add_node(sub_node)
    stop, spinner = spin_in_background(ex)
    result: dict[str, Any] = {'trainer': trainer, 'executor': executor}
    sender = None
    try:
        t0 = time.monotonic()
        while sub_node.count_publishers('/invdyn_node/predicted_effort') == 0 or \
                pub_node.count_subscribers('/joint_states') == 0:
            if node_proc.poll() is not None or time.monotonic() - t0 > 120:
                raise RuntimeError(f'node did not come up:\n{log_path.read_text()[-3000:]}')
            time.sleep(0.1)
        if args.trajectory_points > 0:
            sender = start_trajectory_sender(env, names, args.trajectory_points, args.rate)
        time.sleep(1.0)                                  # discovery settles
        rate = float(args.rate)
        n_total = int((args.warmup + args.duration) * rate)
        n_warm = int(args.warmup * rate)
        q, qd, tau = trajectory(np.arange(n_total), rate)
        msg = JointState()
        msg.name = names
        traj_sent_at: list[int] = []
        sent = np.zeros(n_total)
        keys = np.zeros(n_total, dtype=np.int64)
        base_ns = 1_000_000_000_000
        period = 1.0 / rate
        cpu0 = cpu_tr0 = None
        start = time.perf_counter()
        if sender is not None:     # its clock is ours (CLOCK_MONOTONIC), its GIL is not
            n_traj = int(args.duration / args.trajectory_period)
            sender.stdin.write(f'{start + (n_warm + traj_every // 2) / rate} '
                               f'{args.trajectory_period} {n_traj}\n')
            sender.stdin.flush()
        for i in range(n_total):
            if i == n_warm:
                cpu0 = proc_cpu_seconds(node_proc.pid)
                tpids = trainer_pids(node_proc.pid)
                cpu_tr0 = sum(proc_cpu_seconds(p) or 0.0 for p in tpids)
                t_meas = time.perf_counter()
                diag_start = len(diags)
            target = start + i * period
            delay = target - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            ns = base_ns + int(round(i * period * 1e9))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
            msg.position = q[i].tolist()
            msg.velocity = qd[i].tolist()
            msg.effort = tau[i].tolist()
            keys[i] = ns
            sent[i] = time.perf_counter()
            pub.publish(msg)
        t_end = time.perf_counter()
        cpu1 = proc_cpu_seconds(node_proc.pid)
        cpu_tr1 = sum(proc_cpu_seconds(p) or 0.0 for p in tpids)
        time.sleep(max(1.5, 1.2 * float(DEFAULT_PARAMS['diagnostics_period_s'])))
        wall = t_end - t_meas
        lat = np.array([received[k] - s for k, s in zip(keys[n_warm:], sent[n_warm:])
                        if k in received]) * 1e6
        n_meas = n_total - n_warm
        traj_publish_ms = math.nan
        if sender is not None:
            lines = sender.communicate(timeout=30)[0].split()
            times = np.array([float(x) for x in lines[0::2]])
            traj_publish_ms = max((float(x) for x in lines[1::2]), default=math.nan)
            traj_sent_at = [int(i) for i in np.searchsorted(sent, times)]
        if traj_sent_at:
            # inputs lost in the 50 ms after a trajectory was sent vs. in the 50 ms half a
            # trajectory period before each (what the stream loses anyway)
            missing = np.array([k not in received for k in keys])
            span = int(round(0.05 * rate))
            result['lost_after_trajectory'] = int(sum(missing[i:i + span].sum()
                                                      for i in traj_sent_at))
            result['lost_between_trajectories'] = int(sum(
                missing[i - traj_every // 2:i - traj_every // 2 + span].sum()
                for i in traj_sent_at))
        result.update(
            sent=n_meas, matched=int(lat.size), lost=int(n_meas - lat.size),
            send_rate_hz=n_meas / wall,
            e2e_p50_us=float(np.percentile(lat, 50)) if lat.size else math.nan,
            e2e_p99_us=float(np.percentile(lat, 99)) if lat.size else math.nan,
            e2e_max_us=float(lat.max()) if lat.size else math.nan,
            node_cpu_pct=100 * (cpu1 - cpu0) / wall if cpu0 is not None and cpu1 is not None
            else math.nan,
            trainer_cpu_pct=100 * (cpu_tr1 - cpu_tr0) / wall if tpids else math.nan)
        periods = [d for d in diags[diag_start:] if d['_t'] <= t_end + 1.0
                   and d.get('latency_samples', '0') not in ('0', '')]

        def col(key: str) -> np.ndarray:
            vals = []
            for d in periods:
                try:
                    vals.append(float(d[key]))
                except (KeyError, ValueError):
                    pass
            return np.array(vals)

        p50s, p99s, maxs = col('callback_latency_p50_us'), col('callback_latency_p99_us'), \
            col('callback_latency_max_us')
        c50s, c99s = col('callback_cpu_p50_us'), col('callback_cpu_p99_us')
        h50s, h99s = col('callback_handoff_p50_us'), col('callback_handoff_p99_us')
        r50s, r99s = col('reception_latency_p50_us'), col('reception_latency_p99_us')
        rmaxs = col('reception_latency_max_us')
        weights = col('latency_samples')
        if p50s.size and p50s.size == weights.size:
            # per-period percentiles, averaged weighted by the period's sample count
            result.update(cb_p50_us=float(np.average(p50s, weights=weights)),
                          cb_p99_us=float(np.average(p99s, weights=weights)),
                          cb_p99_worst_period_us=float(p99s.max()),
                          cb_max_us=float(maxs.max()),
                          cb_cpu_p50_us=float(np.average(c50s, weights=weights)),
                          cb_cpu_p99_us=float(np.average(c99s, weights=weights)))
            if h50s.size == weights.size:
                result.update(handoff_p50_us=float(np.average(h50s, weights=weights)),
                              handoff_p99_us=float(np.average(h99s, weights=weights)),
                              handoff_p99_worst_period_us=float(h99s.max()))
            ok = np.isfinite(r50s) & np.isfinite(r99s) if r50s.size == weights.size else None
            if ok is not None and ok.any():
                result.update(recv_p50_us=float(np.average(r50s[ok], weights=weights[ok])),
                              recv_p99_us=float(np.average(r99s[ok], weights=weights[ok])),
                              recv_p99_worst_period_us=float(r99s[ok].max()))
            if rmaxs.size and np.isfinite(rmaxs).any():
                result['recv_max_us'] = float(np.nanmax(rmaxs))
        last = diags[-1] if diags else {}
        result.update(ready=last.get('ready'), recent_nmse=last.get('recent_nmse'),
                      trainer_dropped=last.get('dropped_by_trainer_queue'),
                      lost_by_dds=last.get('lost_by_dds'),
                      missed_by_stamp_gap=last.get('missed_by_stamp_gap'),
                      trajectories_sent=len(traj_sent_at),
                      trajectory_publish_max_ms=traj_publish_ms,
                      trajectories_annotated=last.get('trajectories_annotated'),
                      trajectories_passed_through=last.get('trajectories_passed_through'),
                      trajectory_annotation_ms=last.get('trajectory_annotation_ms'),
                      steps={k.split('.')[0]: last.get(k) for k in last if k.endswith('.steps')})
    finally:
        if sender is not None and sender.poll() is None:
            sender.kill()
            sender.wait()
        stop.set()
        spinner.join(2.0)
        stop_node_process(node_proc, 60)
        log.close()
        ex.shutdown()
        for node, ctx in ((pub_node, pub_ctx), (sub_node, sub_ctx)):
            node.destroy_node()
            rclpy.shutdown(context=ctx)
    result['node_exit_code'] = node_proc.returncode
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--duration', type=float, default=10.0, help='measured seconds')
    ap.add_argument('--warmup', type=float, default=3.0,
                    help='seconds streamed before measuring (filter warm-up, first weights)')
    ap.add_argument('--rate', type=float, default=1000.0, help='joint_states rate (Hz)')
    ap.add_argument('--trainer', default='process', choices=('process', 'thread'))
    ap.add_argument('--executor', default='events', choices=('events', 'single'))
    ap.add_argument('--compare', action='store_true',
                    help='run process+events, thread+events and process+single')
    ap.add_argument('--config', default=None,
                    help='node params file (default: KUKA joints with a bench learner setup)')
    ap.add_argument('-p', '--param', action='append', metavar='NAME:=VALUE',
                    help='extra node parameter, e.g. -p dual_enabled:=false -p hidden_size:=32')
    ap.add_argument('--repeat', type=int, default=1,
                    help='run each variant N times (fresh node each time) and add a median row: '
                         'the shared machine makes single runs vary a lot')
    ap.add_argument('--prior', action='store_true',
                    help='with the physics prior (prior: rnea, the Panda URDF, panda_joint1..7)')
    ap.add_argument('--trajectory-points', type=int, default=0,
                    help='also send a JointTrajectory of this many points to ~/trajectory_in '
                         'every --trajectory-period s of the measured window (0: none)')
    ap.add_argument('--trajectory-period', type=float, default=1.0,
                    help='seconds between two trajectories (with --trajectory-points)')
    ap.add_argument('--domain', type=int, default=None, help='ROS_DOMAIN_ID (default: from pid)')
    ap.add_argument('--save', default=None, help='save the report as bench/results/<SAVE>.txt/json')
    args = ap.parse_args(argv)

    out = Recorder()
    info = machine_info()
    out(format_machine(info))
    import rclpy  # noqa: F401 - fail early without ROS
    out(f'stream: 7 joints at {args.rate:g} Hz, warm-up {args.warmup:g} s, measured '
        f'{args.duration:g} s; config '
        f'{args.config or "bench defaults (hidden 64 x 2, window 10, dual LSTM+GRU)"}'
        + (f'; overrides {args.param}' if args.param else '')
        + ('; prior: rnea (Panda URDF, panda_joint1..7)' if args.prior else ''))
    variants = [('process', 'events'), ('thread', 'events'), ('process', 'single')] \
        if args.compare else [(args.trainer, args.executor)]
    results = []
    medians = []
    for trainer, executor in variants:
        runs = []
        for k in range(max(1, args.repeat)):
            out(f'-- trainer={trainer} executor={executor} run {k + 1}/{max(1, args.repeat)} '
                f'(load average {[round(x, 2) for x in os.getloadavg()]}) ...')
            r = run_variant(args, trainer, executor, out)
            r['run'] = k + 1
            runs.append(r)
            out('   ' + ', '.join(f'{k}={v:.1f}' if isinstance(v, float) else f'{k}={v}'
                                  for k, v in r.items()))
        results += runs
        if len(runs) > 1:
            med = {'trainer': trainer, 'executor': executor, 'run': 'median'}
            for key, v in runs[0].items():
                vals = [x.get(key) for x in runs]
                if isinstance(v, (int, float)) and not isinstance(v, bool) and key != 'run' \
                        and all(isinstance(x, (int, float)) for x in vals):
                    med[key] = float(np.median(vals))
            medians.append(med)
    results += medians
    header = ['variant', 'cb p50 us', 'cb p99 us', 'cb max us', 'cb cpu p50', 'cb cpu p99',
              'cb p99 max/s', 'handoff p50', 'handoff p99', 'handoff p99 max/s', 'recv p50',
              'recv p99', 'recv p99 max/s', 'recv max us', 'e2e p50 us',
              'e2e p99 us', 'e2e max us', 'lost', 'lost after traj', 'lost before', 'sent',
              'node CPU %', 'trainer CPU %']
    rows = [[f"{r['trainer']}+{r['executor']}"
             + (f" #{r['run']}" if args.repeat > 1 else ''), r.get('cb_p50_us'), r.get('cb_p99_us'),
             r.get('cb_max_us'), r.get('cb_cpu_p50_us'), r.get('cb_cpu_p99_us'),
             r.get('cb_p99_worst_period_us'), r.get('handoff_p50_us'), r.get('handoff_p99_us'),
             r.get('handoff_p99_worst_period_us'), r.get('recv_p50_us'), r.get('recv_p99_us'),
             r.get('recv_p99_worst_period_us'), r.get('recv_max_us'), r['e2e_p50_us'],
             r['e2e_p99_us'], r['e2e_max_us'], r['lost'], r.get('lost_after_trajectory'),
             r.get('lost_between_trajectories'), r['sent'], r['node_cpu_pct'],
             r['trainer_cpu_pct']] for r in results]
    out(format_table(header, rows, floatfmt='.0f'))
    out('cb = callback latency inside the node, wall clock (arrival -> ~/predicted_effort '
        'published; the budget: p50 <= 200 us, p99 <= 500 us); cb cpu = the same interval in the '
        "callback thread's CPU time (the code's cost without waiting for a core); handoff = "
        'arrival -> publish() called (cb minus the Fast DDS delivery inside publish()); recv = '
        "from the middleware's reception of the input (MessageInfo.received_timestamp) -> "
        "publish() returned: cb plus the executor's wake-up, take and deserialization (recv max: "
        "the worst joint state of the run); p50 / p99 "
        "are per-second percentiles from /diagnostics averaged over the measured seconds, "
        '"p99 max/s" is the worst second\'s p99 (an upper bound of the p99 over all samples); '
        'e2e = bench '
        'publish -> bench receive (two DDS hops and the bench executor included). '
        'CPU % of one core, over the measured window.')
    if args.save:
        for p in save_results(args.save, out.text, {'machine': info, 'args': vars(args),
                                                     'results': results}):
            out(f'saved {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
