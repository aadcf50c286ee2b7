"""Recording: validation, segment and joint selection (make_recording is shared)."""
import numpy as np
import pytest

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.recording import Recording, make_time_axis


def make_recording(n: int = 12, joints=('a', 'b'), with_qd=True, with_qdd=False) -> Recording:
    rng = np.random.default_rng(0)
    t, segs = make_time_axis([n // 2, n - n // 2], 50.0)
    return Recording(name='synthetic', joint_names=joints, rate_hz=50.0, t=t,
                     q=rng.standard_normal((n, len(joints))),
                     qd=rng.standard_normal((n, len(joints))) if with_qd else None,
                     qdd=rng.standard_normal((n, len(joints))) if with_qdd else None,
                     tau=rng.standard_normal((n, len(joints))) * 1e3, segments=segs)


def test_recording_validates_its_arrays():
    rec = make_recording()
    kwargs = dict(name='r', joint_names=('a', 'b'), rate_hz=50.0, t=rec.t, q=rec.q, qd=None,
                  qdd=None, tau=rec.tau)
    Recording(**kwargs)
    with pytest.raises(DatasetError, match='shape'):
        Recording(**{**kwargs, 'tau': rec.tau[:, :1]})
    with pytest.raises(DatasetError, match='NaN'):
        Recording(**{**kwargs, 'q': np.where(np.arange(12)[:, None] == 3, np.inf, rec.q)})
    with pytest.raises(DatasetError, match='strictly increasing'):
        Recording(**{**kwargs, 't': rec.t[::-1]})
    with pytest.raises(DatasetError, match='segments'):
        Recording(**{**kwargs, 'segments': ((0, 5), (6, 12))})
    with pytest.raises(DatasetError, match='unique'):
        Recording(**{**kwargs, 'joint_names': ('a', 'a')})
    assert not rec.q.flags.writeable  # a Recording cannot be modified behind its back


def test_select_segments_and_joints():
    rec = make_recording(n=10, joints=('a', 'b', 'c'))
    second = rec.segment(1)
    assert second.segments == ((0, 5),)
    np.testing.assert_array_equal(second.q, rec.q[5:])
    np.testing.assert_array_equal(second.t, rec.t[5:])
    sub = rec.select_joints(['c', 'a'])
    np.testing.assert_array_equal(sub.tau, rec.tau[:, [2, 0]])
    with pytest.raises(DatasetError, match='not in the recording'):
        rec.select_joints(['z'])
