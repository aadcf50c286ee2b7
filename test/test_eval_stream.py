"""eval_stream: the evaluator's input stream (Stream, as_stream) and its reference states."""
import numpy as np
import pytest
from test_evaluation import direct_states, make_recording, pipeline_filter

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.datasets import Recording
from invdyn_ros.offline.eval_stream import Stream, as_stream, reference_states


def test_as_stream_from_tuples_marks_missing_velocity_and_effort():
    rows = [(0.00, [0.0, 1.0], [0.1, 0.2], [1.0, 2.0]),
            (0.01, [0.1, 1.1], None, [1.5, 2.5]),
            (0.02, [0.2, 1.2], [0.3, 0.4], None)]
    s = as_stream(rows, joint_names=['x', 'y'])
    assert s.joint_names == ('x', 'y') and len(s) == 3
    assert s.sample(1)[2] is None               # no velocity -> estimator differentiates
    assert s.sample(2)[3] is None               # no effort -> not learned, not scored
    np.testing.assert_allclose(s.sample(0)[2], [0.1, 0.2])
    with pytest.raises(DatasetError):
        as_stream([(0.0, [0.0, 1.0], None, None), (0.01, [0.0], None, None)])
    with pytest.raises(DatasetError):
        as_stream([])


def test_params_joint_names_select_and_order_the_recordings_joints():
    s = as_stream(make_recording(50), joint_names=['b'])
    assert s.joint_names == ('b',) and s.q.shape == (50, 1)
    np.testing.assert_array_equal(s.tau[:, 0], make_recording(50).tau[:, 1])
    with pytest.raises(DatasetError):
        as_stream(make_recording(50), joint_names=['a', 'zzz'])


def test_reference_states_are_the_estimators_states_row_by_row():
    rec = make_recording(300)
    ref = reference_states(as_stream(rec), pipeline_filter(rec.joint_names))
    direct = direct_states(rec)
    assert set(np.flatnonzero(ref.valid)) == set(direct)
    for i, (x, tau) in direct.items():
        np.testing.assert_array_equal(ref.X[i], x)
        np.testing.assert_array_equal(ref.tau[i], tau)


def test_reference_states_of_a_constant_torque_are_exact():
    rec = make_recording(200)
    rec = Recording(name='c', joint_names=rec.joint_names, rate_hz=100.0, t=rec.t, q=rec.q,
                    qd=rec.qd, qdd=None, tau=np.tile([3.0, -2.0], (200, 1)))
    ref = reference_states(as_stream(rec), pipeline_filter(rec.joint_names),
                           effort_scale=[2.0, 0.5])
    assert ref.labeled.sum() > 150
    np.testing.assert_allclose(ref.tau[ref.labeled], np.tile([6.0, -1.0], (ref.labeled.sum(), 1)),
                               rtol=1e-9)


def test_stream_columns_mean_what_sample_means():
    """The batched replay's input (Stream.columns) says per row exactly what Stream.sample says:
    no velocity where the row is all NaN, no effort where any effort is NaN."""
    rng = np.random.default_rng(0)
    qd = rng.normal(size=(6, 2))
    qd[1] = np.nan            # no velocity
    qd[2, 0] = np.nan         # one unknown entry: passed on (the estimator differentiates it)
    tau = rng.normal(size=(6, 2))
    tau[4, 1] = np.nan        # no effort
    stream = Stream(('a', 'b'), np.arange(6) * 0.01, rng.normal(size=(6, 2)), qd, tau)
    stamps, q, qds, taus = stream.columns(1, 6)
    for k, i in enumerate(range(1, 6)):
        t_i, q_i, qd_i, tau_i = stream.sample(i)
        assert stamps[k] == t_i and np.array_equal(q[k], q_i)
        assert (qds[k] is None) == (qd_i is None) and (taus[k] is None) == (tau_i is None)
        if qd_i is not None:
            np.testing.assert_array_equal(qds[k], qd_i)
        if tau_i is not None:
            np.testing.assert_array_equal(taus[k], tau_i)
    assert qds[0] is None and taus[3] is None and np.isnan(qds[1][0])
    # a clean slice stays a plain (N, n) array: the fast path
    _, _, qd_clean, tau_clean = stream.columns(3, 4)
    assert isinstance(qd_clean, np.ndarray) and isinstance(tau_clean, np.ndarray)
