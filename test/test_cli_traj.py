"""invdyn_traj: a CSV or bag trajectory + checkpoint + config in, the annotated CSV out; the
efforts equal ``annotate_trajectory``'s on a pipeline loaded from the same checkpoint."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml
from test_trajectory_feedforward import motion

from invdyn_ros.cli.invdyn_traj import main
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory

NAMES = ['j1', 'j2']
RATE = 100.0
PARAMS = {'joint_names': NAMES, 'torque_limits': [50.0, 50.0], 'hidden_size': 8,
          'num_layers': 1, 'window': 4, 'batch_size': 16, 'learning_rate': 3e-3,
          'rate_hz': RATE, 'updates_per_sample': 0.3, 'min_samples': 32}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('traj_cli')
    torch.manual_seed(0)
    cfg = PipelineConfig.from_params(PARAMS)
    trainer = make_trainer(cfg, 'inline')
    pipe = Pipeline(cfg, trainer)
    t = 100.0 + np.arange(500) / RATE
    q, qd, qdd, tau = motion(t)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
    prefix = str(tmp / 'ckpt')
    trainer.save(prefix)
    config = tmp / 'params.yaml'
    config.write_text(yaml.safe_dump({'invdyn_node': {'ros__parameters': PARAMS}}))
    return tmp, prefix, config


def expected(prefix, names, times, q, qd=None, qdd=None):
    cfg = PipelineConfig.from_params(PARAMS)
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline', checkpoint=prefix))
    return annotate_trajectory(pipe, names, times, q, qd, qdd, require_ready=False)


def read_out(path):
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    return rows


def test_csv_in_annotated_csv_out(setup, tmp_path, capsys):
    _, prefix, config = setup
    times = np.arange(30) * 0.04
    q, qd, qdd, _ = motion(times)
    src = tmp_path / 'plan.csv'
    with open(src, 'w', newline='') as f:          # joints in another order
        w = csv.writer(f)
        w.writerow(['time', 'q_j2', 'q_j1', 'qd_j2', 'qd_j1'])
        for i in range(len(times)):
            w.writerow([times[i], q[i, 1], q[i, 0], qd[i, 1], qd[i, 0]])
    out = tmp_path / 'plan_ff.csv'
    assert main([str(src), '--checkpoint', prefix, '--config', str(config), '-o', str(out)]) == 0
    assert '30 points' in capsys.readouterr().out
    rows = read_out(out)
    assert len(rows) == 30 and list(rows[0])[:5] == ['time', 'q_j2', 'q_j1', 'qd_j2', 'qd_j1']
    eff = np.array([[float(r['effort_j1']), float(r['effort_j2'])] for r in rows])
    ref = expected(prefix, NAMES, times, q, qd)
    np.testing.assert_allclose(eff, ref.efforts, atol=1e-9)
    assert np.abs(eff).max() > 1.0 and all(r['outside'] == '0' for r in rows)
    # --max-point-dt: the rows of the inserted points too (29 gaps of 40 ms -> one each)
    out2 = tmp_path / 'plan_dense.csv'
    assert main([str(src), '--checkpoint', prefix, '--config', str(config), '-o', str(out2),
                 '--max-point-dt', '0.02']) == 0
    assert '59 points (29 inserted)' in capsys.readouterr().out
    rows = read_out(out2)
    times2 = np.array([float(r['time']) for r in rows])
    np.testing.assert_allclose(times2, np.arange(59) * 0.02, atol=1e-12)
    q2 = np.array([[float(r['q_j1']), float(r['q_j2'])] for r in rows])
    np.testing.assert_array_equal(q2[::2], q)                   # the plan's own points
    eff2 = np.array([[float(r['effort_j1']), float(r['effort_j2'])] for r in rows])
    np.testing.assert_allclose(eff2[::2], eff, atol=1e-9)


def test_bag_trajectory_in(setup, tmp_path):
    from rosbags.rosbag2 import Writer

    from invdyn_ros.offline.bag import joint_state_typestore

    _, prefix, config = setup
    ts = joint_state_typestore()
    JT = ts.types['trajectory_msgs/msg/JointTrajectory']
    JTP = ts.types['trajectory_msgs/msg/JointTrajectoryPoint']
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    Duration = ts.types['builtin_interfaces/msg/Duration']
    times = np.arange(20) * 0.05
    q, qd, qdd, _ = motion(times)
    empty = np.zeros(0)
    points = [JTP(positions=q[i], velocities=qd[i], accelerations=qdd[i], effort=empty,
                  time_from_start=Duration(sec=int(t), nanosec=int(round((t % 1) * 1e9))))
              for i, t in enumerate(times)]
    bag = tmp_path / 'plans'
    with Writer(bag, version=Writer.VERSION_LATEST) as writer:
        conn = writer.add_connection('/plan', 'trajectory_msgs/msg/JointTrajectory', typestore=ts)
        for k in range(2):
            msg = JT(header=Header(stamp=Time(sec=1, nanosec=0), frame_id=''),
                     joint_names=NAMES, points=points[:10 + 10 * k])
            writer.write(conn, 1_000_000_000 + k, ts.serialize_cdr(
                msg, 'trajectory_msgs/msg/JointTrajectory'))
    out = tmp_path / 'ff.csv'
    args = [str(bag), '--topic', '/plan', '--message', '1', '--checkpoint', prefix,
            '--config', str(config), '-o', str(out)]
    assert main(args) == 0
    rows = read_out(out)
    assert len(rows) == 20 and 'qdd_j1' in rows[0]
    eff = np.array([[float(r['effort_j1']), float(r['effort_j2'])] for r in rows])
    np.testing.assert_allclose(eff, expected(prefix, NAMES, times, q, qd, qdd).efforts, atol=1e-9)
    assert main(args[:4] + ['7'] + args[5:]) == 2                   # no such message


def test_user_errors_exit_2_with_one_line(setup, tmp_path, capsys):
    tmp, prefix, config = setup
    src = tmp_path / 'bad.csv'
    src.write_text('time,q_j1,q_j2\n0,0,0\n0.1,nan,0\n')
    base = ['--checkpoint', prefix, '--config', str(config), '-o', str(tmp_path / 'o.csv')]
    assert main([str(src)] + base) == 2
    assert 'NaN' in capsys.readouterr().err
    src.write_text('time,q_j1\n0,0\n0.1,0\n')
    assert main([str(src)] + base) == 2
    assert "['j2'] missing" in capsys.readouterr().err
    assert main([str(src), '--checkpoint', str(tmp / 'nope'), '--config', str(config),
                 '-o', str(tmp_path / 'o.csv')]) == 2
    err = capsys.readouterr().err
    assert 'not found' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / 'o.csv').exists()
