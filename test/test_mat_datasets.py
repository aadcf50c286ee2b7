"""The .mat readers: synthetic files with known contents in every layout, plus the real files."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from conftest import REPO

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.mat_datasets import (BAXTER_JOINTS, KUKA_JOINTS, UR10_JOINTS,
                                             find_datasets_dir, kuka_split, load_baxter, load_kuka,
                                             load_mat, load_ur10)
from invdyn_ros.offline.recording import SEGMENT_GAP_S


def polydoros_block(n_rows: int, seed: int) -> np.ndarray:
    """N x 35 random values, different per trajectory (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_rows, 35))


@pytest.fixture
def kuka_mat(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    # kukatraj10 before kukatraj2 in the dict and in name order: the reader must sort numerically.
    blocks = {f'kukatraj{k}': polydoros_block(4 + k, seed=k) for k in (1, 10, 2)}
    path = tmp_path / 'KukaDirectDynamics.mat'
    scipy.io.savemat(path, blocks)
    return path, blocks


def test_kuka_layout_shapes_names_segments_and_time(kuka_mat):
    path, blocks = kuka_mat
    rec = load_kuka(path)
    assert rec.joint_names == KUKA_JOINTS == tuple(f'lbr_A{i}' for i in range(1, 8))
    assert rec.segment_labels == ('kukatraj1', 'kukatraj2', 'kukatraj10')
    lengths = [5, 6, 14]
    assert rec.segments == ((0, 5), (5, 11), (11, 25))
    assert rec.q.shape == rec.qd.shape == rec.tau.shape == (25, 7)
    assert rec.qdd is None
    assert rec.rate_hz == 100.0
    # columns: q 0:7, qd 7:14, tau 14:21 of each block, in trajectory order
    stacked = np.concatenate([blocks['kukatraj1'], blocks['kukatraj2'], blocks['kukatraj10']])
    np.testing.assert_array_equal(rec.q, stacked[:, 0:7])
    np.testing.assert_array_equal(rec.qd, stacked[:, 7:14])
    np.testing.assert_array_equal(rec.tau, stacked[:, 14:21])
    # t = k / rate inside a trajectory, SEGMENT_GAP_S between trajectories
    np.testing.assert_allclose(rec.t[:5], np.arange(5) / 100.0)
    assert rec.t[5] == pytest.approx(rec.t[4] + SEGMENT_GAP_S)
    np.testing.assert_allclose(np.diff(rec.t[5:11]), 0.01)
    assert rec.t[11] - rec.t[10] == pytest.approx(SEGMENT_GAP_S)
    assert len(rec) == sum(lengths)
    assert rec.meta['source'] == str(path)


def test_loader_accepts_file_folder_and_datasets_root(kuka_mat, tmp_path):
    path, _ = kuka_mat
    root = tmp_path / 'root'
    (root / 'kuka_lwr_polydoros2016').mkdir(parents=True)
    (root / 'kuka_lwr_polydoros2016' / path.name).write_bytes(path.read_bytes())
    for where in (path, tmp_path, root, root / 'kuka_lwr_polydoros2016'):
        assert len(load_kuka(where)) == 25
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(DatasetError, match='no KukaDirectDynamics.mat'):
        load_kuka(empty)


def test_trajectory_selection_and_joint_renaming(kuka_mat):
    path, blocks = kuka_mat
    rec = load_kuka(path, trajectories=[10, 1], joint_names=[f'j{i}' for i in range(7)], rate_hz=50)
    assert rec.segment_labels == ('kukatraj10', 'kukatraj1')
    assert rec.joint_names == tuple(f'j{i}' for i in range(7))
    np.testing.assert_array_equal(rec.q[:14], blocks['kukatraj10'][:, :7])
    np.testing.assert_allclose(np.diff(rec.t[:14]), 0.02)
    assert load_kuka(path, trajectories='2').segment_labels == ('kukatraj2',)
    with pytest.raises(DatasetError, match=r'trajectories \[3\]'):
        load_kuka(path, trajectories=[3])
    with pytest.raises(DatasetError, match='3 joint names'):
        load_kuka(path, joint_names=['a', 'b', 'c'])


def test_baxter_and_ur10_layouts(tmp_path):
    bax = {f'baxtertraj{k}': polydoros_block(3, k) for k in (1, 2)}
    scipy.io.savemat(tmp_path / 'BaxterDirectDynamics.mat', bax)
    rec = load_baxter(tmp_path)
    assert rec.joint_names == BAXTER_JOINTS
    assert rec.segments == ((0, 3), (3, 6)) and rec.rate_hz == 100.0
    np.testing.assert_array_equal(rec.tau[3:], bax['baxtertraj2'][:, 14:21])

    ur = np.arange(10 * 24, dtype=float).reshape(10, 24)
    scipy.io.savemat(tmp_path / 'URpickNplace.mat', {'urPicknPlace': ur, 'urPicknPlaceHyper': ur[:3]})
    rec = load_ur10(tmp_path)
    assert rec.joint_names == UR10_JOINTS and rec.n_joints == 6
    assert rec.rate_hz == 125.0 and rec.segments == ((0, 10),)
    np.testing.assert_array_equal(rec.q, ur[:, 0:6])
    np.testing.assert_array_equal(rec.qd, ur[:, 6:12])
    np.testing.assert_array_equal(rec.qdd, ur[:, 12:18])
    np.testing.assert_array_equal(rec.tau, ur[:, 18:24])
    np.testing.assert_allclose(rec.t, np.arange(10) * 0.008)


def test_load_mat_detects_layout_by_variable_names(tmp_path, kuka_mat):
    path, _ = kuka_mat
    assert load_mat(path).name == 'kuka'
    scipy.io.savemat(tmp_path / 'b.mat', {'baxtertraj1': polydoros_block(3, 0)})
    assert load_mat(tmp_path / 'b.mat').joint_names == BAXTER_JOINTS
    scipy.io.savemat(tmp_path / 'u.mat', {'urPicknPlace': np.zeros((4, 24))})
    assert load_mat(tmp_path / 'u.mat').n_joints == 6


@pytest.mark.parametrize('content, match', [
    ({'something': np.zeros((3, 35))}, 'unknown .mat layout'),
    ({'kukatraj1': np.zeros((3, 30))}, r'shape \(3, 30\), expected \(N, 35\)'),
    ({'urPicknPlace': np.zeros((3, 35))}, r'expected \(N, 24\)'),
    ({'kukatraj1': np.full((3, 35), np.nan)}, 'NaN'),
])
def test_bad_mat_contents_raise_dataset_error_with_path(tmp_path, content, match):
    path = tmp_path / 'bad.mat'
    scipy.io.savemat(path, content)
    with pytest.raises(DatasetError, match=match) as info:
        load_mat(path)
    assert str(path) in str(info.value)


def test_missing_and_garbage_mat_files(tmp_path):
    with pytest.raises(DatasetError, match='no such file'):
        load_mat(tmp_path / 'missing.mat')
    garbage = tmp_path / 'garbage.mat'
    garbage.write_bytes(b'\x00\x01not a mat file' * 50)
    with pytest.raises(DatasetError, match=str(garbage)):
        load_mat(garbage)
    with pytest.raises(DatasetError):
        load_kuka(tmp_path / 'missing.mat')


def test_kuka_split_is_trajectories_1_to_8_and_9_10(tmp_path):
    blocks = {f'kukatraj{k}': polydoros_block(k + 2, k) for k in range(1, 11)}
    scipy.io.savemat(tmp_path / 'k.mat', blocks)
    train, test = kuka_split(load_kuka(tmp_path / 'k.mat'))
    assert train.segment_labels == tuple(f'kukatraj{k}' for k in range(1, 9))
    assert test.segment_labels == ('kukatraj9', 'kukatraj10')
    assert len(train) == sum(k + 2 for k in range(1, 9)) and len(test) == 11 + 12
    np.testing.assert_array_equal(test.q[:11], blocks['kukatraj9'][:, :7])
    assert test.segments == ((0, 11), (11, 23))
    assert np.all(np.diff(test.t) > 0)
    with pytest.raises(DatasetError, match='missing'):
        kuka_split(load_kuka(tmp_path / 'k.mat', trajectories=[1, 2]))


def test_find_datasets_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv('INVDYN_DATASETS', str(tmp_path))
    assert find_datasets_dir() == tmp_path
    monkeypatch.setenv('INVDYN_DATASETS', str(tmp_path / 'absent'))
    assert find_datasets_dir() is None


def test_find_datasets_dir_from_a_source_checkout(tmp_path):
    """Run from the repository (``PYTHONPATH`` = the checkout), without ``$INVDYN_DATASETS``, the
    folder is ``shared/datasets`` beside the repository, wherever the module sits in the package
    (moving it into ``offline/`` once made it look inside the repository instead)."""
    env = {k: v for k, v in os.environ.items() if k != 'INVDYN_DATASETS'}
    env['PYTHONPATH'] = str(REPO)
    out = subprocess.run([sys.executable, '-c', 'from invdyn_ros.offline.mat_datasets import '
                          'find_datasets_dir; print(find_datasets_dir())'],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    expected = REPO.parent / 'shared' / 'datasets'
    found = out.stdout.strip()
    if expected.is_dir():
        assert found != 'None' and Path(found).resolve() == expected.resolve()
    else:
        assert found == 'None'


# ---------------------------------------------------------------------- the real files
@pytest.fixture
def real_dir(shared_datasets, monkeypatch):
    monkeypatch.setenv('INVDYN_DATASETS', str(shared_datasets))
    return shared_datasets


def test_real_kuka_counts_and_split(real_dir):
    rec = load_kuka()
    assert len(rec) == 20068 and len(rec.segments) == 10 and rec.n_joints == 7
    assert rec.segment_labels == tuple(f'kukatraj{k}' for k in range(1, 11))
    train, test = kuka_split(rec)
    assert len(train) == 16052 and len(test) == 4016  # Huang et al.: ~16,000 / ~4,000
    assert train.segment_labels[-1] == 'kukatraj8' and test.segment_labels == ('kukatraj9', 'kukatraj10')
    assert abs(float(rec.tau[:, 1].mean()) - 32.349) < 0.01  # SOURCE.md: joint-2 torque mean


def test_real_baxter_and_ur10_counts(real_dir):
    bax = load_baxter()
    assert len(bax) == 19295 and len(bax.segments) == 10
    ur = load_ur10()
    assert len(ur) == 12349 and ur.n_joints == 6 and ur.qdd is not None and ur.rate_hz == 125.0
    assert load_mat(real_dir / 'ur10_polydoros2015' / 'URpickNplace.mat').name == 'ur10'
