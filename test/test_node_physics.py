"""invdyn_node with the physics prior over real DDS: the URDF from a transient-local
robot_description topic, the prior's torques, minus_gravity feedforward, a joint missing from the
URDF refused at start-up, the identified parameters resumed from the checkpoint set (and a
corrupt physics member refused)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from test_node import (UR5, DescriptionPublisher, Harness, log_of, node_env, start_node, stop_node,
                       write_params)

from conftest import REPO

pytestmark = [pytest.mark.ros, pytest.mark.slow]

rclpy = pytest.importorskip('rclpy')
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf  # noqa: E402
from invdyn_ros.stages.physics import PhysicsPrior, RobotModel  # noqa: E402

LIMITS = [150.0, 150.0, 150.0, 28.0, 28.0, 28.0]
URDF = find_robot_urdf('ur5').read_text()


def test_urdf_from_a_transient_local_topic_prior_torques_and_minus_gravity(tmp_path):
    # published BEFORE the node exists: only transient-local durability delivers it
    desc = DescriptionPublisher(URDF)
    params = {'joint_names': UR5, 'torque_limits': LIMITS, 'prior': 'rnea',
              'feedforward_mode': 'minus_gravity', 'identify': False, 'rate_hz': 100.0,
              'window': 5, 'hidden_size': 8, 'num_layers': 1, 'trainer': 'inline',
              'ready_min_samples': 50, 'ready_window': 50, 'dual_enabled': True,
              'aux_decimation': 1, 'stale_timeout_s': 1.0}
    pfile = write_params(tmp_path / 'p.yaml', params)
    proc = start_node(['--ros-args', '--params-file', str(pfile)], tmp_path / 'node.log')
    h = Harness()
    prior = PhysicsPrior(RobotModel(URDF, UR5))
    try:
        h.wait_for_node(proc)
        assert 'robot description received on /robot_description' in log_of(proc)
        assert "networks ['rnea+lstm', 'gru']" in log_of(proc)
        # slow motion whose measured torque is exactly the URDF model's
        t = np.arange(0.0, 4.0, 0.01)
        w = 2 * np.pi * 0.3
        ph = np.arange(6)
        q0 = np.array([0.2, -1.0, 1.2, -1.5, -1.4, 0.1])
        q = q0 + 0.3 * np.sin(w * t[:, None] + ph)
        qd = 0.3 * w * np.cos(w * t[:, None] + ph)
        qdd = -0.3 * w * w * np.sin(w * t[:, None] + ph)
        tau = np.array([prior.predict(a, b, c) for a, b, c in zip(q, qd, qdd)])
        keys = []
        for i in range(len(t)):
            keys.append(h.send(100.0 + t[i], UR5, q[i], qd[i], tau[i]))
            time.sleep(0.01)
        d = h.wait_diag(lambda d: int(d.get('feedforward_measured', 0)) > 0, timeout=30)
        assert d['prior'] == 'rnea' and d['feedforward_mode'] == 'minus_gravity'
        # the model alone is scored too (the feedforward's fallback); it is exact here
        assert d['prior_ready'] in ('True', 'False') and int(d['feedforward_prior']) >= 0
        assert h.wait_diag(lambda d: d['prior_ready'] == 'True', timeout=30)
        got = [(i, h.outputs[k]) for i, k in enumerate(keys) if k in h.outputs]
        assert len(got) >= 300, log_of(proc)[-3000:]
        # the published prediction is the prior (the residual is not trusted yet / is ~0) for
        # the filtered state it reports
        for i, m in got[-50:]:
            pos = np.asarray(m.position)
            vel = np.asarray(m.velocity)
            assert np.abs(np.asarray(m.effort) - prior.predict(pos, vel, np.zeros(6))).max() \
                < 0.1 * np.abs(tau).max()
        # ready from the prior alone; minus_gravity: each feedforward is a published prediction
        # minus g(q) of its position -- pair them by arrival order (most pairs line up)
        pairs = [(h.ff[j], h.outputs[h.output_order[k - 1]])
                 for j, k in enumerate(h.ff_at_output) if k > 0 and any(h.ff[j])]
        assert len(pairs) > 50
        diffs = [np.abs(np.asarray(ff) - (np.asarray(m.effort) -
                                          prior.gravity(np.asarray(m.position)))).max()
                 for ff, m in pairs]
        assert np.median(diffs) < 1e-6, np.median(diffs)
        g = np.array([prior.gravity(np.asarray(m.position)) for _, m in pairs])
        assert np.abs(g).max() > 10.0                 # 'total' would differ by tens of N m
        assert h.identifier and 'rnea+lstm' in h.identifier[-1].layout.dim[0].label
    finally:
        h.close()
        assert stop_node(proc) == 0
        desc.close()


def test_a_joint_missing_from_the_urdf_stops_the_node_naming_it(tmp_path):
    names = UR5[:5] + ['lbr_A7']
    pfile = write_params(tmp_path / 'bad.yaml', {'joint_names': names, 'torque_limits': LIMITS,
                                                 'prior': 'rnea', 'robot_description': URDF})
    proc = subprocess.run([sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args', '--params-file',
                           str(pfile)], cwd=str(REPO), env=node_env(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'lbr_A7' in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr[-2000:]


def identified_checkpoint(tmp_path, params):
    """A checkpoint set written by a pipeline that identified a 2 kg payload for 5 s:
    (prefix, the physics stage's state_dict)."""
    from invdyn_ros.pipeline.parameters import NODE_ONLY_PARAMETERS
    from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
    from invdyn_ros.sim.trajectory import FourierTrajectory

    config = PipelineConfig.from_params({k: v for k, v in params.items()
                                         if k not in NODE_ONLY_PARAMETERS})
    arm = SimulatedArm(ArmConfig(payload_kg=2.0, friction_eps=0.05))
    pipe = Pipeline(config, make_trainer(config, 'inline'))
    t = np.arange(0.0, 5.0, 0.01)
    q, qd, qdd = FourierTrajectory(6, seed=0).sample(t)
    for i in range(len(t)):
        pipe.process(100.0 + t[i], q[i], qd[i], arm.rnea(q[i], qd[i], qdd[i]))
    prefix = str(tmp_path / 'ckpt' / 'ur5')
    pipe.save_checkpoint(prefix)
    state = pipe.physics.state_dict()
    pipe.close()
    assert np.abs(state['theta'] - state['identification']['theta0']).max() > 1e-3
    return prefix, state


def node_params(tmp_path):
    return {'joint_names': UR5, 'torque_limits': LIMITS, 'prior': 'rnea', 'robot_description': URDF,
            'rate_hz': 100.0, 'window': 5, 'hidden_size': 8, 'num_layers': 1,
            'trainer': 'inline', 'dual_enabled': False, 'checkpoint_period_s': 0.0,
            'checkpoint_path': str(tmp_path / 'ckpt' / 'ur5')}


def test_the_node_resumes_the_identified_parameters_and_saves_them_again(tmp_path):
    from invdyn_ros.learning.checkpoints import read_physics

    params = node_params(tmp_path)
    prefix, state = identified_checkpoint(tmp_path, params)
    n = len(state['theta'])
    proc = start_node(['--ros-args', '--params-file',
                       str(write_params(tmp_path / 'p.yaml', params))], tmp_path / 'node.log')
    try:
        deadline = time.monotonic() + 120.0
        while 'publishing zeros until ready' not in log_of(proc):
            assert proc.poll() is None, log_of(proc)[-3000:]
            assert time.monotonic() < deadline, log_of(proc)[-3000:]
            time.sleep(0.1)
        assert f'physics stage resumed ({n} identified parameters)' in log_of(proc)
    finally:
        assert stop_node(proc) == 0
    with open(proc.log_path) as f:
        assert 'final checkpoint written' in f.read()
    # no joint state came: the final checkpoint holds exactly the resumed parameters
    saved = read_physics(prefix)[n]
    np.testing.assert_array_equal(saved['theta'], state['theta'])
    np.testing.assert_array_equal(saved['region']['points'], state['region']['points'])


def test_a_corrupt_physics_member_stops_the_node_and_is_left_untouched(tmp_path):
    from invdyn_ros.learning.checkpoints import physics_path

    params = node_params(tmp_path)
    prefix, state = identified_checkpoint(tmp_path, params)
    path = physics_path(prefix, len(state['theta']))
    with open(path, 'r+b') as f:
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 0x55]))
    with open(path, 'rb') as f:
        damaged = f.read()
    pfile = write_params(tmp_path / 'p.yaml', params)
    proc = subprocess.run([sys.executable, '-m', 'invdyn_ros.ros.node', '--ros-args', '--params-file',
                           str(pfile)], cwd=str(REPO), env=node_env(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'physics-' in proc.stderr and 'does not match its manifest' in proc.stderr, \
        proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    with open(path, 'rb') as f:
        assert f.read() == damaged
