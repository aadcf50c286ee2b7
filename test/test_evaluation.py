"""evaluate(): options, scoring, learning curves, on generated arms with known answers.

The helpers here (``make_recording``, ``pipeline_filter``, ``direct_states``, ``FAST``) are shared by
the tests of the evaluator's parts (test_eval_*.py) and test_cli_eval."""
import json
import math

import numpy as np
import pytest
import torch

from invdyn_ros import metrics
from invdyn_ros.errors import ConfigError, DatasetError
from invdyn_ros.offline.datasets import Recording
from invdyn_ros.offline.evaluation import evaluate
from invdyn_ros.stages.estimation import StreamingEstimator

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
    from invdyn_ros.pipeline.pipeline import PipelineConfig

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


# ------------------------------------------------------------------------- robustness + plots
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


def test_plots_are_written_for_a_report(tmp_path):
    from invdyn_ros.offline import plots

    report = evaluate(make_recording(500), 'naive,mlp', params=FAST, epochs=1)
    written = plots.write_all(tmp_path, report)
    assert set(written) == {'torques', 'errors', 'learning_curve'}
    for path in written.values():
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_learning_curve_bins_are_the_nmse_of_consecutive_masked_samples():
    from invdyn_ros.offline.evaluation import _curve
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




def test_the_parts_public_names_are_importable_from_evaluation():
    from invdyn_ros.offline import eval_models, eval_report, eval_stream, evaluation

    for module in (eval_models, eval_report, eval_stream):
        for name in module.__all__:
            if name in ('pipeline_params',):
                continue
            assert getattr(evaluation, name) is getattr(module, name), name
    for name in evaluation.__all__:
        assert hasattr(evaluation, name), name
