"""invdyn_node's trajectory mode over real DDS: ``~/trajectory_in`` JointTrajectory -> the same
trajectory on ``~/trajectory_out`` with every point's effort = the learned feedforward.

The node runs as a subprocess resumed from a checkpoint trained here (a single LSTM, inline
trainer with ``updates_per_sample: 0``, so its weights stay the checkpoint's); a few joint
states make it ready (lenient ``ready_nmse``). The expected efforts come from
``annotate_trajectory`` on a Pipeline built in this process from the same checkpoint: equal to
1e-6 N m (the same float32 forward on the same windows).
"""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from test_node import Harness, log_of, start_node, stop_node, write_params
from test_trajectory_feedforward import motion

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip('rclpy')
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from trajectory_msgs.msg import JointTrajectory  # noqa: E402

from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer  # noqa: E402
from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory  # noqa: E402
from invdyn_ros.ros.trajectory_msgs_io import trajectory_message  # noqa: E402

NAMES = ['j1', 'j2']
RATE = 100.0
PARAMS = {'joint_names': NAMES, 'torque_limits': [50.0, 50.0], 'model': 'lstm',
          'dual_enabled': False, 'hidden_size': 8, 'num_layers': 1, 'window': 4,
          'batch_size': 16, 'learning_rate': 3e-3, 'rate_hz': RATE, 'updates_per_sample': 0.3,
          'min_samples': 32, 'ready_window': 50, 'ready_min_samples': 60, 'ready_nmse': 5.0,
          'poll_every': 10}
NODE_PARAMS = dict(PARAMS, trainer='inline', updates_per_sample=0.0, checkpoint_period_s=0.0,
                   diagnostics_period_s=0.5, stale_timeout_s=0.5,
                   trajectory_max_point_dt=0.025)      # one point inserted per 50 ms gap
IN, OUT = '/invdyn_node/trajectory_in', '/invdyn_node/trajectory_out'


def train_checkpoint(prefix) -> None:
    torch.manual_seed(0)
    cfg = PipelineConfig.from_params(PARAMS)
    trainer = make_trainer(cfg, 'inline')
    pipe = Pipeline(cfg, trainer)
    t = 100.0 + np.arange(600) / RATE
    q, qd, qdd, tau = motion(t)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    assert trainer.learners['lstm'].steps > 50
    trainer.save(prefix)


@pytest.fixture(scope='module')
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('traj')
    prefix = str(tmp / 'ckpt' / 'traj')
    (tmp / 'ckpt').mkdir()
    train_checkpoint(prefix)
    pfile = write_params(tmp / 'params.yaml', dict(NODE_PARAMS, checkpoint_path=prefix))
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp / 'node.log')
    h = Harness()
    h.traj_out: list[JointTrajectory] = []
    reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    h.traj_pub = h.node.create_publisher(JointTrajectory, IN, reliable)
    h.node.create_subscription(JointTrajectory, OUT, h.traj_out.append, reliable)
    try:
        h.wait_for_node(proc)
        deadline = time.monotonic() + 60
        while h.node.count_subscribers(IN) == 0 or h.node.count_publishers(OUT) == 0:
            assert proc.poll() is None and time.monotonic() < deadline, log_of(proc)[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)
        yield dict(proc=proc, h=h, prefix=prefix)
    finally:
        h.close()
        stop_node(proc)


def send_and_wait(h, msg, count_before, timeout=30.0):
    """Publish until the answer comes back (a first message may race the discovery of the
    node's publisher by our subscription; the node's answer to a repeat is the same)."""
    deadline = time.monotonic() + timeout
    while len(h.traj_out) <= count_before and time.monotonic() < deadline:
        h.traj_pub.publish(msg)
        resend = time.monotonic() + 3.0
        while len(h.traj_out) <= count_before and time.monotonic() < min(resend, deadline):
            time.sleep(0.05)
    assert len(h.traj_out) > count_before, 'no trajectory came back'
    return h.traj_out[count_before]


def test_trajectory_passes_through_before_ready_then_gets_the_learned_efforts(node):
    h, proc = node['h'], node['proc']
    times = np.arange(40) * 0.05                        # sparse points: 50 ms apart
    q, qd, qdd, _ = motion(times)
    names = ['j2', 'gripper', 'j1']                     # reordered, plus an extra joint

    def mixed(a, extra):
        return np.column_stack([a[:, 1], np.full(len(times), extra), a[:, 0]])

    msg = trajectory_message(names, times, mixed(q, 0.02), mixed(qd, 0.0), mixed(qdd, 0.0),
                             stamp_ns=7_000_000_000)
    msg.header.frame_id = 'plan-42'                     # header: passed on unchanged

    # 1. not ready: the same trajectory, unchanged (no efforts), and a warning
    out = send_and_wait(h, msg, 0)
    assert list(out.joint_names) == names and len(out.points) == len(times)
    assert all(len(p.effort) == 0 for p in out.points)
    np.testing.assert_array_equal([list(p.positions) for p in out.points], mixed(q, 0.02))
    deadline = time.monotonic() + 10
    while 'passed through without feedforward' not in log_of(proc):
        assert time.monotonic() < deadline, log_of(proc)[-2000:]
        time.sleep(0.1)

    # 2. a malformed trajectory (NaN positions, no velocities / accelerations): dropped, counted
    bad = trajectory_message(names, times[:3], np.full((3, 3), np.nan))
    h.traj_pub.publish(bad)

    # 3. make the node ready: joint states of the trained motion
    h.prime(proc, NAMES)
    t = 900.0 + np.arange(150) / RATE
    jq, jqd, _, jtau = motion(t)
    for i in range(len(t)):
        h.send(t[i], NAMES, jq[i], jqd[i], jtau[i])
        time.sleep(0.005)
    d = h.wait_diag(lambda d: d['ready'] == 'True', timeout=30)
    assert int(d['trajectories_rejected']) == 1 and int(d['trajectories_passed_through']) >= 1
    assert int(d['trajectories_annotated']) == 0

    # 4. ready: the same trajectory comes back with the pipeline's efforts, in its joint order,
    # with a point inserted on its spline in the middle of every gap (trajectory_max_point_dt)
    out = send_and_wait(h, msg, len(h.traj_out))
    assert out.header.frame_id == 'plan-42' and out.header.stamp.sec == 7
    assert list(out.joint_names) == names and len(out.points) == 2 * len(times) - 1
    stamps = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in out.points]
    np.testing.assert_allclose(stamps, np.arange(2 * len(times) - 1) * 0.025, atol=1e-9)
    np.testing.assert_array_equal([list(p.positions) for p in out.points[::2]], mixed(q, 0.02))
    inserted = np.array([list(p.positions) for p in out.points[1::2]])
    mid = (times[:-1] + times[1:]) / 2                  # on the spline through the points
    np.testing.assert_allclose(inserted[:, [2, 0]], motion(mid)[0], atol=1e-4)
    assert all(len(p.accelerations) == 3 for p in out.points)
    eff = np.array([list(p.effort) for p in out.points])
    assert eff.shape == (2 * len(times) - 1, 3) and np.isfinite(eff).all()
    eff = eff[::2]                                      # the plan's own points
    np.testing.assert_array_equal(eff[:, 1], 0.0)         # the extra joint: no effort given
    cfg = PipelineConfig.from_params(PARAMS)
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline', checkpoint=node['prefix']))
    ref = annotate_trajectory(pipe, NAMES, times, q, qd, qdd, require_ready=False)
    np.testing.assert_allclose(eff[:, [2, 0]], ref.efforts, atol=1e-6)
    assert np.abs(ref.efforts).max() > 1.0 and not ref.outside.any()
    d = h.wait_diag(lambda d: int(d['trajectories_annotated']) >= 1)
    assert math.isfinite(float(d['trajectory_annotation_ms']))
    assert int(d['trajectory_points_inserted']) == len(times) - 1
    assert d['internal_errors'] == '0'
