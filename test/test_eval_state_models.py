"""eval_state_models: naive / gp (and rnea / identified) on the reference estimator states."""
import numpy as np
from test_evaluation import FAST, direct_states, make_recording

from invdyn_ros.offline.evaluation import evaluate


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
