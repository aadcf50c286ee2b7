"""invdyn_eval end to end on small bags: outputs, numbers, storages, odd bags and user errors."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from rosbags.rosbag2 import StoragePlugin, Writer
from test_evaluation import make_recording as arm_recording

from invdyn_ros import metrics
from invdyn_ros.cli.invdyn_eval import load_params, main
from invdyn_ros.offline.bag import (JOINT_STATE_TYPE, joint_state_typestore, read_recording,
                                    write_joint_states)
from invdyn_ros.offline.datasets import Recording
from invdyn_ros.stages.estimation import StreamingEstimator

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def make_recording(n_samples=900, rate_hz=100.0, joints=('a', 'b'), with_qd=True, extra=False):
    """test_evaluation's 2-joint arm with known inverse dynamics; ``extra`` adds a third joint (a
    gripper)."""
    rec = arm_recording(n_samples, rate_hz, with_qd=with_qd, joints=tuple(joints))
    if not extra:
        return rec
    column = np.ones((n_samples, 1))
    return Recording(name=rec.name, joint_names=tuple(joints) + ('gripper',), rate_hz=rate_hz,
                     t=rec.t, q=np.hstack([rec.q, 0.01 * column]),
                     qd=None if rec.qd is None else np.hstack([rec.qd, 0.0 * column]), qdd=None,
                     tau=np.hstack([rec.tau, 5.0 * column]))


def write_config(path: Path) -> Path:
    path.write_text('invdyn_node:\n  ros__parameters:\n    window: 5\n    batch_size: 32\n')
    return path


def run_cli(tmp_path, bag, *extra, out='out'):
    args = [str(bag), '--output', str(tmp_path / out), '--config',
            str(write_config(tmp_path / 'params.yaml')), '--epochs', '2', *extra]
    return main(args), tmp_path / out


@pytest.fixture(scope='module')
def sqlite_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('bags') / 'arm_sqlite'
    write_joint_states(path, make_recording(), storage='sqlite3')
    return path


def test_outputs_and_numbers_match_a_direct_computation(tmp_path, sqlite_bag, capsys):
    rc, out = run_cli(tmp_path, sqlite_bag, '--models', 'naive,mlp')
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads((out / 'metrics.json').read_text())
    assert data['bag'] == str(sqlite_bag) and data['topic'] == '/joint_states'
    assert data['protocol'] == 'split' and data['train_fraction'] == 0.8
    assert data['joint_names'] == ['a', 'b'] and data['samples'] == 900
    assert abs(data['stream_seconds'] - 8.99) < 1e-9 and data['wall_seconds'] > 0
    assert [r['model'] for r in data['results']] == ['naive', 'mlp']

    # the labels: the pipeline's estimator run here on the bag's samples, independently
    from invdyn_ros.pipeline.pipeline import PipelineConfig

    rec = read_recording(sqlite_bag)
    est = StreamingEstimator(2, PipelineConfig.from_params({'joint_names': ['a', 'b']}).filter)
    states = [(i, est.update(rec.t[i], rec.q[i], rec.qd[i], rec.tau[i])) for i in range(900)]
    train = np.array([s.tau for i, s in states if s is not None and i < 720])
    mean, std = train.mean(axis=0), train.std(axis=0)
    np.testing.assert_allclose(data['nmse_reference']['mean'], mean, rtol=1e-12)

    pred = np.load(out / 'predictions.npz')
    test_tau = np.array([s.tau for i, s in states if s is not None and i >= 720])
    np.testing.assert_allclose(pred['measured'], test_tau)      # every test state is scored
    naive = data['results'][0]
    np.testing.assert_allclose(naive['nmse'], metrics.nmse(test_tau, np.tile(mean, (180, 1)),
                                                           mean, std), rtol=1e-9)
    mlp = data['results'][1]
    np.testing.assert_allclose(mlp['nmse'], metrics.nmse(pred['measured'], pred['pred_mlp'],
                                                         mean, std), rtol=1e-9)
    np.testing.assert_allclose(mlp['mse'], metrics.mse(pred['measured'], pred['pred_mlp']),
                               rtol=1e-9)
    assert mlp['nmse_mean'] < naive['nmse_mean']
    for name in ('torques.png', 'errors.png', 'learning_curve.png'):
        assert (out / name).read_bytes()[:4] == b'\x89PNG'
    # the table on stdout
    assert 'naive' in captured.out and 'mlp' in captured.out and 'mean' in captured.out


def test_mcap_and_sqlite_bags_give_identical_results(tmp_path, sqlite_bag):
    mcap = tmp_path / 'arm_mcap'
    write_joint_states(mcap, make_recording(), storage='mcap')
    rc1, out1 = run_cli(tmp_path, sqlite_bag, '--models', 'naive,mlp', out='o1')
    rc2, out2 = run_cli(tmp_path, mcap, '--models', 'naive,mlp', out='o2')
    assert rc1 == rc2 == 0
    r1 = json.loads((out1 / 'metrics.json').read_text())['results']
    r2 = json.loads((out2 / 'metrics.json').read_text())['results']
    assert [r['nmse'] for r in r1] == [r['nmse'] for r in r2]


def _write_messy_bag(path: Path, rec: Recording, storage=StoragePlugin.SQLITE3):
    """Extra joint (gripper), joint order changing per message, no velocities, a second topic."""
    ts = joint_state_typestore()
    JointState = ts.types[JOINT_STATE_TYPE]
    Header = ts.types['std_msgs/msg/Header']
    Time = ts.types['builtin_interfaces/msg/Time']
    String = ts.types['std_msgs/msg/String']
    names = list(rec.joint_names)
    with Writer(path, version=9, storage_plugin=storage) as writer:
        js = writer.add_connection('/joint_states', JOINT_STATE_TYPE, typestore=ts)
        other = writer.add_connection('/chatter', 'std_msgs/msg/String', typestore=ts)
        for k in range(rec.n_samples):
            ns = 10**9 + int(round(rec.t[k] * 1e9))
            order = np.arange(len(names)) if k % 2 == 0 else np.arange(len(names))[::-1]
            msg = JointState(header=Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9),
                                           frame_id=''),
                             name=[names[i] for i in order], position=rec.q[k, order].copy(),
                             velocity=np.zeros(0), effort=rec.tau[k, order].copy())
            writer.write(js, ns, ts.serialize_cdr(msg, JOINT_STATE_TYPE))
            if k % 10 == 0:
                writer.write(other, ns + 1,
                             ts.serialize_cdr(String(data='x'), 'std_msgs/msg/String'))


def test_bag_with_extra_joints_no_velocities_and_a_second_topic_evaluates(tmp_path, capsys):
    bag = tmp_path / 'messy'
    _write_messy_bag(bag, make_recording(extra=True), StoragePlugin.MCAP)
    rc, out = run_cli(tmp_path, bag, '--models', 'naive', '--joints', 'a,b')
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    data = json.loads((out / 'metrics.json').read_text())
    assert data['joint_names'] == ['a', 'b'] and data['samples'] == 900
    assert data['estimator']['counters']['velocity_from_positions'] > 800
    assert 'velocities from positions' in captured.out
    # all joints of the first message by default: the gripper too
    rc, out = run_cli(tmp_path, bag, '--models', 'naive', out='all')
    assert rc == 0
    assert json.loads((out / 'metrics.json').read_text())['joint_names'] == ['a', 'b', 'gripper']


@pytest.mark.parametrize('case', ['missing', 'corrupt', 'not_a_bag', 'topic', 'joint'])
def test_bad_bags_exit_2_with_one_line(tmp_path, sqlite_bag, capsys, case):
    if case == 'missing':
        bag = tmp_path / 'nope'
        extra = []
    elif case == 'corrupt':
        bag = tmp_path / 'corrupt'
        write_joint_states(bag, make_recording(200), storage='sqlite3')
        db = next(p for p in bag.iterdir() if p.suffix == '.db3')
        db.write_bytes(np.random.default_rng(0).bytes(db.stat().st_size))
        extra = []
    elif case == 'not_a_bag':
        bag = tmp_path / 'file.txt'
        bag.write_text('hello')
        extra = []
    elif case == 'topic':
        bag, extra = sqlite_bag, ['--topic', '/nothing']
    else:
        bag, extra = sqlite_bag, ['--joints', 'a,zzz']
    rc, out = run_cli(tmp_path, bag, '--models', 'naive', *extra)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith('invdyn_eval: error:') and err.count('\n') == 1, err
    assert 'Traceback' not in err
    assert not (out / 'metrics.json').exists()


@pytest.mark.parametrize('extra', [['--models', 'naive,svm'], ['--protocol', 'kfold'],
                                   ['--train-fraction', '1.5'], ['--config', '/nonexistent.yaml']])
def test_user_errors_exit_2(tmp_path, sqlite_bag, capsys, extra):
    rc, _ = run_cli(tmp_path, sqlite_bag, *extra)
    assert rc == 2
    assert 'Traceback' not in capsys.readouterr().err


def test_bad_config_file_exits_2(tmp_path, sqlite_bag, capsys):
    cfg = tmp_path / 'bad.yaml'
    cfg.write_text('invdyn_node: {ros__parameters: [1, 2\n')
    assert main([str(sqlite_bag), '--config', str(cfg), '--output', str(tmp_path / 'o')]) == 2
    assert 'bad.yaml' in capsys.readouterr().err


def test_load_params_accepts_ros2_param_files_and_flat_mappings(tmp_path):
    p = tmp_path / 'p.yaml'
    p.write_text('/**:\n  ros__parameters:\n    window: 7\n    model: gru\n'
                 'invdyn_node:\n  ros__parameters:\n    model: lstm\n    filter: {order: 3}\n')
    assert load_params(p) == {'window': 7, 'model': 'lstm', 'filter.order': 3}
    p.write_text('window: 4\nbatch_size: 16\n')
    assert load_params(p) == {'window': 4, 'batch_size': 16}
    p.write_text('')
    assert load_params(p) == {}


def test_console_script_runs_as_a_process(tmp_path, sqlite_bag):
    """The real entry point: exit status and one-line error across a process boundary."""
    proc = subprocess.run([sys.executable, '-m', 'invdyn_ros.cli.invdyn_eval',
                           str(tmp_path / 'missing_bag'), '--output', str(tmp_path / 'o')],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith('invdyn_eval: error:') and 'Traceback' not in proc.stderr


def test_prequential_with_dual_writes_every_plot(tmp_path, sqlite_bag, capsys):
    rc, out = run_cli(tmp_path, sqlite_bag, '--models', 'naive,dual', '--protocol', 'prequential',
                      '--seed', '2')
    assert rc == 0, capsys.readouterr().err
    data = json.loads((out / 'metrics.json').read_text())
    assert data['protocol'] == 'prequential' and data['seed'] == 2
    dual = data['results'][1]
    assert dual['model'] == 'dual' and len(dual['details']['second_network_fraction']) == 2
    for name in ('torques.png', 'errors.png', 'learning_curve.png', 'dual_selection.png'):
        assert (out / name).read_bytes()[:4] == b'\x89PNG'


def test_config_joint_names_choose_the_joint_order(tmp_path, sqlite_bag, capsys):
    cfg = tmp_path / 'ordered.yaml'
    cfg.write_text('invdyn_node:\n  ros__parameters:\n    joint_names: [b, a]\n    window: 5\n'
                   '    trainer: process\n')
    rc = main([str(sqlite_bag), '--config', str(cfg), '--models', 'naive',
               '--output', str(tmp_path / 'o')])
    assert rc == 0, capsys.readouterr().err
    data = json.loads((tmp_path / 'o' / 'metrics.json').read_text())
    assert data['joint_names'] == ['b', 'a']
    # the gravity offset of joint b (+1 Nm, cos) makes its mean torque the larger one
    assert data['nmse_reference']['mean'][0] > data['nmse_reference']['mean'][1]
    # a config parameter the pipeline does not know is a user error naming it
    cfg.write_text('windw: 5\n')
    assert main([str(sqlite_bag), '--config', str(cfg), '--output', str(tmp_path / 'o2')]) == 2
    assert 'windw' in capsys.readouterr().err
