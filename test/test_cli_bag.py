"""invdyn_bag CLI: conversions that work (exit 0) and user errors (exit 2, one line, no traceback)."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from invdyn_ros.bag import bag_info, read_joint_states, read_recording
from invdyn_ros.cli.invdyn_bag import main
from invdyn_ros.datasets import KUKA_JOINTS


@pytest.fixture
def kuka_mat(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / 'KukaDirectDynamics.mat'
    scipy.io.savemat(path, {f'kukatraj{k}': rng.standard_normal((5 + k, 35)) for k in (1, 2, 3)})
    return path


def assert_user_error(capsys, code: int, match: str) -> None:
    err = capsys.readouterr().err
    assert code == 2
    assert 'Traceback' not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and match in lines[-1], err


def test_converts_mat_to_bag(tmp_path, kuka_mat, capsys):
    out = tmp_path / 'out'
    assert main([str(kuka_mat), '-o', str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.count('\n') == 0 and '21 JointState messages' in summary and '/joint_states' in summary
    info = bag_info(out)
    assert info.storage == 'sqlite3' and info.topics['/joint_states'].count == 6 + 7 + 8
    rec = read_recording(out)
    assert rec.joint_names == KUKA_JOINTS and len(rec.segments) == 3


def test_options_trajectories_joints_storage_topic_rate(tmp_path, kuka_mat):
    out = tmp_path / 'out'
    joints = ','.join(f'j{i}' for i in range(7))
    assert main([str(kuka_mat), '-o', str(out), '--format', 'kuka', '--trajectories', '3,1',
                 '--joints', joints, '--storage', 'mcap', '--topic', '/arm/joint_states',
                 '--rate', '50']) == 0
    data = scipy.io.loadmat(kuka_mat)
    samples = list(read_joint_states(out, '/arm/joint_states'))
    assert len(samples) == 8 + 6 and bag_info(out).storage == 'mcap'
    assert samples[0].names == tuple(f'j{i}' for i in range(7))
    np.testing.assert_array_equal(samples[0].position, data['kukatraj3'][0, :7])
    np.testing.assert_array_equal(samples[8].effort, data['kukatraj1'][0, 14:21])
    assert samples[1].stamp_ns - samples[0].stamp_ns == 20_000_000  # 50 Hz


def test_csv_input_needs_rate_without_time(tmp_path, capsys):
    csv = tmp_path / 'rec.csv'
    csv.write_text('q_a,tau_a\n1,10\n2,20\n3,30\n')
    assert_user_error(capsys, main([str(csv), '-o', str(tmp_path / 'o1')]), 'rate')
    assert not (tmp_path / 'o1').exists()
    assert main([str(csv), '-o', str(tmp_path / 'o2'), '--rate', '10']) == 0
    assert [s.stamp_ns for s in read_joint_states(tmp_path / 'o2')] == [0, 100_000_000, 200_000_000]


def test_existing_output_needs_force_and_force_only_replaces_bags(tmp_path, kuka_mat, capsys):
    out = tmp_path / 'out'
    assert main([str(kuka_mat), '-o', str(out)]) == 0
    capsys.readouterr()
    assert_user_error(capsys, main([str(kuka_mat), '-o', str(out)]), 'exists')
    assert main([str(kuka_mat), '-o', str(out), '--force', '--trajectories', '1']) == 0
    assert bag_info(out).message_count == 6

    precious = tmp_path / 'precious'
    precious.mkdir()
    (precious / 'thesis.tex').write_text('do not delete')
    capsys.readouterr()
    assert_user_error(capsys, main([str(kuka_mat), '-o', str(precious), '--force']),
                      'not a rosbag2 bag')
    assert (precious / 'thesis.tex').read_text() == 'do not delete'


@pytest.mark.parametrize('make_input, extra, match', [
    (lambda p: p / 'missing.mat', [], 'no such file'),
    (lambda p: (p / 'junk.mat').write_bytes(b'junk' * 40) and p / 'junk.mat', [], 'junk.mat'),
    (lambda p: (p / 'x.txt').write_text('1,2') and p / 'x.txt', [], '--format'),
    (lambda p: (scipy.io.savemat(p / 'w.mat', {'kukatraj1': np.zeros((4, 20))}), p / 'w.mat')[1],
     [], 'expected (N, 35)'),
    (lambda p: (scipy.io.savemat(p / 't.mat', {'kukatraj1': np.zeros((4, 35))}), p / 't.mat')[1],
     ['--trajectories', '5'], 'trajectories'),
    (lambda p: (scipy.io.savemat(p / 'j.mat', {'kukatraj1': np.zeros((4, 35))}), p / 'j.mat')[1],
     ['--joints', 'a,b'], 'joint names'),
])
def test_bad_inputs_exit_2(tmp_path, capsys, make_input, extra, match):
    src = make_input(tmp_path)
    code = main([str(src), '-o', str(tmp_path / 'out'), *extra])
    assert_user_error(capsys, code, match)
    assert not (tmp_path / 'out').exists()


def test_argparse_errors_return_2_and_help_returns_0(capsys, tmp_path):
    assert main([]) == 2
    assert main(['x.mat', '-o', str(tmp_path / 'o'), '--storage', 'zip']) == 2
    assert main(['--help']) == 0
    assert 'invdyn_bag' in capsys.readouterr().out
