"""invdyn_bag CLI: conversions that work (exit 0) and user errors (exit 2, one line, no traceback)."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import yaml

from invdyn_ros.cli.invdyn_bag import main
from invdyn_ros.offline.bag import (DEFAULT_START_TIME_NS, bag_info, read_joint_states,
                                    read_recording)
from invdyn_ros.offline.datasets import KUKA_JOINTS


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
    # t starts at 0: the stamps start at a realistic epoch time, never at 0 (= unset in ROS)
    assert [s.stamp_ns for s in read_joint_states(tmp_path / 'o2')] == \
        [DEFAULT_START_TIME_NS + k * 100_000_000 for k in range(3)]


def test_stamps_keep_the_recordings_own_time_and_start_time_option(tmp_path):
    csv = tmp_path / 'rec.csv'
    csv.write_text('time,q_a,tau_a\n1700000123.5,1,10\n1700000123.6,2,20\n')  # epoch seconds
    assert main([str(csv), '-o', str(tmp_path / 'own')]) == 0
    stamps = [s.stamp_ns for s in read_joint_states(tmp_path / 'own')]
    assert abs(stamps[0] - 1_700_000_123_500_000_000) < 1000 and stamps[1] > stamps[0]
    assert main([str(csv), '-o', str(tmp_path / 'given'), '--start-time-ns', '5']) == 0
    assert read_joint_states(tmp_path / 'given').__iter__().__next__().stamp_ns > 5


def test_rosbag_version_8_by_default_and_9_on_request(tmp_path, kuka_mat, capsys):
    assert main([str(kuka_mat), '-o', str(tmp_path / 'v8')]) == 0
    assert 'rosbag2 version 8' in capsys.readouterr().out
    meta = yaml.safe_load((tmp_path / 'v8' / 'metadata.yaml').read_text())
    assert meta['rosbag2_bagfile_information']['version'] == 8
    assert main([str(kuka_mat), '-o', str(tmp_path / 'v9'), '--rosbag-version', '9']) == 0
    meta = yaml.safe_load((tmp_path / 'v9' / 'metadata.yaml').read_text())
    assert meta['rosbag2_bagfile_information']['version'] == 9
    assert read_recording(tmp_path / 'v9').joint_names == KUKA_JOINTS
    assert main([str(kuka_mat), '-o', str(tmp_path / 'v5'), '--rosbag-version', '5']) == 2
    assert not (tmp_path / 'v5').exists()


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
