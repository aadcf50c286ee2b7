"""The CSV / NPZ column format: exact round trips, the naming scheme, bad files."""
import numpy as np
import pytest
from test_recording import make_recording

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.column_files import load_csv, load_npz, save_csv, save_npz


@pytest.mark.parametrize('save, load', [(save_csv, load_csv), (save_npz, load_npz)])
def test_column_format_round_trip_is_exact(tmp_path, save, load):
    rec = make_recording(with_qdd=True)
    path = save(tmp_path / ('rec.csv' if save is save_csv else 'rec.npz'), rec)
    back = load(path)
    assert back.joint_names == rec.joint_names and back.segments == rec.segments
    for key in ('t', 'q', 'qd', 'qdd', 'tau'):
        np.testing.assert_array_equal(getattr(back, key), getattr(rec, key))
    assert back.rate_hz == pytest.approx(50.0)


def test_csv_naming_scheme_reorder_and_rate(tmp_path):
    path = tmp_path / 'x.csv'
    path.write_text('q_j1,q_j2,tau_j2,tau_j1,extra\n'
                    '1,2,20,10,0\n'
                    '3,4,40,30,0\n'
                    '5,6,60,50,0\n')
    with pytest.raises(DatasetError, match='rate'):
        load_csv(path)
    rec = load_csv(path, rate_hz=10)
    assert rec.joint_names == ('j1', 'j2') and rec.qd is None and rec.qdd is None
    np.testing.assert_array_equal(rec.tau, [[10, 20], [30, 40], [50, 60]])
    np.testing.assert_allclose(rec.t, [0, 0.1, 0.2])
    rec = load_csv(path, joint_names=['j2', 'j1'], rate_hz=10)
    np.testing.assert_array_equal(rec.q[:, 0], [2, 4, 6])
    assert rec.meta['ignored_columns'] == ('extra',)


@pytest.mark.parametrize('text, match', [
    ('q_a,tau_a\n1,2\n3\n', 'line 3 has 1 columns'),
    ('q_a,tau_a\n1,nan\n', 'NaN'),
    ('q_a,tau_a\n1,x\n', 'non-numeric'),
    ('q_a\n1\n', r"missing columns \['tau_a'\]"),
    ('q_a,q_b,qd_a,tau_a,tau_b\n1,2,3,4,5\n', r"missing columns \['qd_b'\]"),
    ('time,q_a,tau_a\n0,1,2\n0,1,2\n', 'not strictly increasing'),
    ('', 'empty'),
    ('tau_a\n1\n', 'no q_<joint>'),
])
def test_bad_csv_raises_dataset_error(tmp_path, text, match):
    path = tmp_path / 'bad.csv'
    path.write_text(text)
    with pytest.raises(DatasetError, match=match):
        load_csv(path, rate_hz=100)


def test_bad_npz_raises_dataset_error(tmp_path):
    np.savez(tmp_path / 'obj.npz', q_a=np.array([object()], dtype=object), tau_a=np.ones(1))
    with pytest.raises(DatasetError, match='obj.npz'):
        load_npz(tmp_path / 'obj.npz', rate_hz=1)
    np.savez(tmp_path / 'len.npz', q_a=np.ones(3), tau_a=np.ones(2))
    with pytest.raises(DatasetError, match='different lengths'):
        load_npz(tmp_path / 'len.npz', rate_hz=1)
    (tmp_path / 'junk.npz').write_bytes(b'junk')
    with pytest.raises(DatasetError, match='junk.npz'):
        load_npz(tmp_path / 'junk.npz')
