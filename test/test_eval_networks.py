"""eval_networks: the networks' runs through the node's own Pipeline (split and prequential)."""
import numpy as np
import pytest
import torch
from test_evaluation import FAST, make_recording

from invdyn_ros import metrics
from invdyn_ros.offline.evaluation import evaluate

torch.set_num_threads(1)


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
    from invdyn_ros.pipeline.pipeline import Pipeline

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
