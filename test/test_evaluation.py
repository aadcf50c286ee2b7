"""Offline evaluator core: protocols, scoring and report, on generated arms with known answers."""
import json
import math

import numpy as np
import pytest
import torch

from invdyn_ros import metrics
from invdyn_ros.datasets import Recording
from invdyn_ros.errors import ConfigError, DatasetError
from invdyn_ros.estimation import StreamingEstimator
from invdyn_ros.evaluation import (MODELS, EvalReport, as_stream, evaluate, parse_models,
                                   reference_states)

torch.set_num_threads(1)

#: Small, fast settings for the networks in these tests (node parameter names).
FAST = {'window': 5, 'batch_size': 32}


def make_recording(n_samples: int = 1200, rate_hz: float = 100.0, with_qd: bool = True,
                   joints=('a', 'b'), noise: float = 0.0) -> Recording:
    """A 2-joint arm with known smooth inverse dynamics (inertia, damping, gravity), plus
    optional seeded torque noise [Nm]."""
    t = np.arange(n_samples) / rate_hz
    q = np.stack([0.8 * np.sin(2 * np.pi * 0.3 * t) + 0.3 * np.sin(2 * np.pi * 0.7 * t),
                  0.5 * np.cos(2 * np.pi * 0.45 * t)], axis=1)
    qd = np.gradient(q, t, axis=0)
    qdd = np.gradient(qd, t, axis=0)
    tau = np.stack([2.0 * qdd[:, 0] + 0.5 * qd[:, 0] + 9.0 * np.sin(q[:, 0]),
                    1.0 * qdd[:, 1] + 0.3 * qd[:, 1] + 3.0 * np.cos(q[:, 1]) + 1.0], axis=1)
    if noise:
        tau = tau + np.random.default_rng(0).normal(0.0, noise, tau.shape)
    return Recording(name='arm', joint_names=joints, rate_hz=rate_hz, t=t, q=q,
                     qd=qd if with_qd else None, qdd=None, tau=tau)


def pipeline_filter(joint_names):
    from invdyn_ros.pipeline import PipelineConfig

    return PipelineConfig.from_params({'joint_names': list(joint_names)}).filter


def direct_states(rec: Recording):
    """The estimator's (filtered) states computed here independently: index -> (x, tau)."""
    est = StreamingEstimator(rec.n_joints, pipeline_filter(rec.joint_names))
    out = {}
    for i in range(rec.n_samples):
        s = est.update(rec.t[i], rec.q[i], None if rec.qd is None else rec.qd[i], rec.tau[i])
        if s is not None:
            out[i] = (np.concatenate([s.q, s.qd, s.qdd]), s.tau)
    return out


# ------------------------------------------------------------------------- inputs
def test_parse_models():
    assert parse_models('naive, lstm,naive') == ['naive', 'lstm']
    assert parse_models(['dual']) == ['dual']
    assert set(MODELS) == {'lstm', 'gru', 'mlp', 'va_sta_reslstm', 'gp', 'naive', 'dual',
                           'rnea', 'identified', 'residual_lstm', 'residual_gru',
                           'residual_mlp', 'residual_va_sta_reslstm'}
    for bad in ('svm', 'lstm,,foo', ''):
        with pytest.raises(ConfigError):
            parse_models(bad)


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


# ------------------------------------------------------------------------- options
@pytest.mark.parametrize('kwargs', [{'protocol': 'kfold'}, {'train_fraction': 1.0},
                                    {'train_fraction': 0.0}, {'train_fraction': 'x'},
                                    {'epochs': -1}, {'gp_samples': 1}, {'models': 'svm'},
                                    {'params': ['a']}])
def test_bad_options_raise_config_error(kwargs):
    args = {'models': 'naive', **kwargs}
    with pytest.raises(ConfigError):
        evaluate(make_recording(200), **args)


def test_too_short_a_stream_is_a_dataset_error():
    with pytest.raises(DatasetError):
        evaluate(make_recording(12), 'naive')


# ------------------------------------------------------------------------- known answers
def test_naive_split_matches_a_direct_computation():
    rec = make_recording(1000)
    report = evaluate(rec, 'naive', protocol='split', train_fraction=0.7, params=FAST)
    direct = direct_states(rec)
    n_train = 700
    train_tau = np.array([tau for i, (_, tau) in direct.items() if i < n_train])
    test_tau = np.array([tau for i, (_, tau) in direct.items() if i >= n_train])
    mean, std = train_tau.mean(axis=0), train_tau.std(axis=0)
    expected = metrics.nmse(test_tau, np.tile(mean, (len(test_tau), 1)), mean, std)
    r = report.result('naive')
    np.testing.assert_allclose(r.nmse, expected, rtol=1e-9)
    np.testing.assert_allclose(r.nmse_mean, expected.mean(), rtol=1e-9)
    np.testing.assert_allclose(report.nmse_reference['mean'], mean, rtol=1e-12)
    assert report.test_samples == len(test_tau) == r.scored_samples
    assert report.train_samples == len(train_tau)
    assert report.samples == 1000 and math.isclose(report.stream_seconds, 9.99)
    np.testing.assert_allclose(report.series.predictions['naive'],
                               np.tile(mean, (len(test_tau), 1)))


def test_naive_prequential_predicts_the_running_mean_of_the_past():
    rec = make_recording(400)
    report = evaluate(rec, 'naive', protocol='prequential', params=FAST)
    taus = np.array([tau for _, tau in direct_states(rec).values()])
    expected = np.cumsum(taus, axis=0)[:-1] / np.arange(1, len(taus))[:, None]
    s = report.series
    np.testing.assert_allclose(s.measured, taus[1:])      # the first state has no past: unscored
    np.testing.assert_allclose(s.predictions['naive'], expected, rtol=1e-12)
    assert report.epochs is None and report.protocol == 'prequential'


def test_gp_split_learns_the_arm_far_better_than_naive():
    rec = make_recording(800, noise=0.05)   # noise-free data makes the GP fit ill-conditioned
    report = evaluate(rec, 'naive,gp', protocol='split', gp_samples=150, params=FAST)
    naive, gp = report.result('naive'), report.result('gp')
    assert naive.nmse_mean > 0.5
    assert gp.nmse_mean < 0.02 * naive.nmse_mean
    assert report.gp_samples == 150 and gp.details['gp_samples'] == 150


# ------------------------------------------------------------------------- networks
def test_mlp_split_learns_and_does_not_learn_in_the_test_part():
    rec = make_recording(1200)
    report = evaluate(rec, 'naive,mlp', protocol='split', train_fraction=0.75, params=FAST,
                      epochs=20, seed=1)
    mlp = report.result('mlp')
    assert mlp.coverage > 0.95
    assert mlp.nmse_mean < 0.2 * report.result('naive').nmse_mean, mlp.nmse
    assert all(np.isfinite(mlp.nmse)) and mlp.predict_seconds > 0 and mlp.train_seconds > 0
    learned = mlp.details['learner']['mlp']['samples']
    assert 0.9 * 900 < learned <= 900             # only training-part samples were learned
    assert mlp.details['extra_steps'] > 0
    assert mlp.details['label_mismatches'] == 0  # the pipeline's labels are the scored labels
    assert mlp.realtime_factor and mlp.realtime_factor > 1


def test_split_runs_are_deterministic_for_a_seed():
    rec = make_recording(600)
    a = evaluate(rec, 'mlp', params=FAST, epochs=2, seed=3)
    b = evaluate(rec, 'mlp', params=FAST, epochs=2, seed=3)
    assert a.result('mlp').nmse == b.result('mlp').nmse


def test_prequential_network_scores_every_sample_it_predicted():
    rec = make_recording(600)
    report = evaluate(rec, 'naive,mlp', protocol='prequential', params=FAST)
    mlp = report.result('mlp')
    assert mlp.scored_samples == report.test_samples > 450
    expected = metrics.nmse(report.series.measured, report.series.predictions['mlp'],
                            report.nmse_reference['mean'], report.nmse_reference['std'])
    np.testing.assert_allclose(mlp.nmse, expected)
    t, curve = report.series.curves['mlp']
    assert len(t) > 5 and np.isfinite(curve).all()


@pytest.mark.slow
def test_dual_reports_the_selection_and_both_networks():
    rec = make_recording(700)
    report = evaluate(rec, 'dual', protocol='split', params=FAST, epochs=2)
    dual = report.result('dual')
    names = dual.details['network_names']
    assert len(names) == 2 and set(dual.details['networks']) == set(names)
    frac = dual.details['second_network_fraction']
    assert len(frac) == 2 and all(0.0 <= f <= 1.0 for f in frac)
    s = report.series
    assert s.dual_active is not None and set(np.unique(s.dual_active)) <= {0, 1}
    assert s.dual_names == tuple(names)


def test_split_test_part_batched_replay_equals_the_per_sample_pipeline(monkeypatch):
    """The test part runs through Pipeline.process_batch; a per-sample process() replay (the
    reference, patched in) must give the same predictions, choices and scores."""
    from invdyn_ros.pipeline import Pipeline

    rec = make_recording(700, with_qd=False)
    rows = [(rec.t[i], rec.q[i], None, rec.tau[i]) for i in range(rec.n_samples)]
    rows[600] = (rows[600][0], [np.nan, 0.0], None, rows[600][3])     # rejected, test part
    rows[640] = (rows[640][0], rows[640][1], None, None)               # no effort, test part
    params = {**FAST, 'joint_names': ['a', 'b'], 'hidden_size': 8, 'num_layers': 1,
              'dual_window': 20}
    batched = evaluate(rows, 'dual', protocol='split', params=params, epochs=1, seed=2)

    def per_sample(self, stamps, q, qd=None, tau=None):
        return [self.process(stamps[i], q[i], None if qd is None else qd[i],
                             None if tau is None else tau[i]) for i in range(len(stamps))]

    monkeypatch.setattr(Pipeline, 'process_batch', per_sample)
    reference = evaluate(rows, 'dual', protocol='split', params=params, epochs=1, seed=2)
    a, b = batched.series, reference.series
    np.testing.assert_array_equal(a.t, b.t)
    assert batched.test_samples == reference.test_samples > 100
    np.testing.assert_allclose(a.predictions['dual'], b.predictions['dual'], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(a.dual_active, b.dual_active)
    np.testing.assert_allclose(batched.result('dual').nmse, reference.result('dual').nmse,
                               rtol=1e-4)
    for name, scores in reference.result('dual').details['networks'].items():
        np.testing.assert_allclose(batched.result('dual').details['networks'][name]['nmse'],
                                   scores['nmse'], rtol=1e-4)
    assert batched.result('dual').details['label_mismatches'] == 0


# ------------------------------------------------------------------------- robustness + report
def test_bad_samples_and_missing_velocities_still_evaluate_with_finite_json(tmp_path):
    rec = make_recording(800, with_qd=False)
    rows = [(rec.t[i], rec.q[i], None, rec.tau[i]) for i in range(rec.n_samples)]
    rows[100] = (rows[100][0], [np.nan, 0.0], None, rows[100][3])     # rejected by the estimator
    rows[200] = (rows[200][0], rows[200][1], None, None)               # no effort
    rows[300] = (rows[300][0], [1e9, 0.0], None, rows[300][3])         # absurd position
    report = evaluate(rows, 'naive,mlp', params={**FAST, 'joint_names': ['a', 'b']}, epochs=1)
    text = report.to_json()

    def no_constants(name):
        raise AssertionError(f'{name} in metrics.json')

    data = json.loads(text, parse_constant=no_constants)
    for r in data['results']:
        assert all(np.isfinite(r['nmse'])) and np.isfinite(r['nmse_mean'])
    assert data['estimator']['counters']['rejected_nonfinite'] >= 1
    assert data['estimator']['counters']['rejected_magnitude'] >= 1


def test_report_json_has_the_documented_keys_and_a_table():
    report = evaluate(make_recording(500), 'naive', params=FAST)
    assert isinstance(report, EvalReport)
    data = json.loads(report.to_json())
    for key in ('bag', 'topic', 'protocol', 'train_fraction', 'joint_names', 'samples',
                'stream_seconds', 'wall_seconds', 'results'):
        assert key in data
    for key in ('model', 'nmse', 'nmse_mean', 'mse', 'train_seconds', 'predict_seconds'):
        assert key in data['results'][0]
    table = report.table()
    assert 'a' in table and 'b' in table and 'naive' in table and 'mean' in table


def test_plots_are_written_for_a_report(tmp_path):
    from invdyn_ros import plots

    report = evaluate(make_recording(500), 'naive,mlp', params=FAST, epochs=1)
    written = plots.write_all(tmp_path, report)
    assert set(written) == {'torques', 'errors', 'learning_curve'}
    for path in written.values():
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_stream_columns_mean_what_sample_means():
    """The batched replay's input (Stream.columns) says per row exactly what Stream.sample says:
    no velocity where the row is all NaN, no effort where any effort is NaN."""
    from invdyn_ros.evaluation import Stream

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


def test_learning_curve_bins_are_the_nmse_of_consecutive_masked_samples():
    from invdyn_ros.evaluation import _curve
    rng = np.random.default_rng(3)
    t = np.arange(300) * 0.01
    y = rng.normal(0, 2, (300, 2))
    pred = y + rng.normal(0, 0.3, y.shape)
    pred[7] = np.nan                                    # not predicted: left out
    mask = np.ones(300, bool)
    mask[:50] = False                                   # the training part
    std = np.array([2.0, 1.0])
    ts, vs = _curve(t, y, pred, std, mask, bins=10)
    idx = np.flatnonzero(mask)
    assert len(ts) == 10                                # 250 samples in bins of 25
    for k in range(10):
        sel = idx[25 * k:25 * (k + 1)]
        assert ts[k] == pytest.approx(t[sel].mean(), rel=1e-9)
        assert vs[k] == pytest.approx(float(np.mean(metrics.nmse(y[sel], pred[sel], np.zeros(2),
                                                                 std))), rel=1e-9)


def test_the_identified_parameters_are_reported_in_a_table():
    from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf
    from invdyn_ros.sim.trajectory import FourierTrajectory

    joints = ('shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
              'wrist_2_joint', 'wrist_3_joint')
    arm = SimulatedArm(ArmConfig(payload_kg=2.0, friction_eps=0.05))
    t = np.arange(0.0, 8.0, 0.01)
    q, qd, qdd = FourierTrajectory(6, seed=0).sample(t)
    tau = np.array([arm.rnea(a, b, c) for a, b, c in zip(q, qd, qdd)])
    rec = Recording(name='ur5', joint_names=joints, rate_hz=100.0, t=t, q=q, qd=qd, qdd=None,
                    tau=tau)
    params = {'robot_description': find_robot_urdf('ur5').read_text(), 'prior': 'rnea'}
    report = evaluate(rec, 'rnea,identified', params=params)
    table = report.parameters_table()
    assert table.startswith('identified parameters (identified;')
    assert '(rnea' not in table                     # the URDF's own values are not "identified"
    for j in joints:
        assert j in table
    rep = report.result('identified').details['parameters']
    assert rep['max_relative_change'] > 0.0        # the 2 kg payload moved them
    assert f'{rep["wrist_3_joint"]["mass"]:.3f}' in table
    # a report without a physics model has no such table
    assert evaluate(make_recording(500), 'naive', params=FAST).parameters_table() == ''
